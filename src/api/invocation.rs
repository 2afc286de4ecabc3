//! How an invocation's state, as ECS reports it, is said on the wire.

use crate::aliyun::invocation::{InstanceState, InvocationState, is_final};
use crate::pb;

/// One instance's execution.
pub(crate) fn instance(state: &InstanceState) -> pb::InstanceStatus {
    pb::InstanceStatus {
        instance_id: state.instance_id.clone(),
        status: state.status.clone(),
        is_final: is_final(&state.status),
        exit_code: state.exit_code,
        error_code: state.error_code.clone(),
        error_info: state.error_info.clone(),
        start_time: state.start_time.clone(),
        finish_time: state.finish_time.clone(),
        stop_time: state.stop_time.clone(),
    }
}

/// The invocation with `instances` (all of its own, or a wait's targeted ones).
pub(crate) fn invocation(
    state: &InvocationState,
    instances: Vec<pb::InstanceStatus>,
) -> pb::Invocation {
    pb::Invocation {
        invoke_id: state.invoke_id.clone(),
        status: state.status.clone(),
        is_final: is_final(&state.status),
        instances,
    }
}

/// The invocation and every one of its instances.
pub(crate) fn whole(state: &InvocationState) -> pb::Invocation {
    invocation(state, state.instances.iter().map(instance).collect())
}
