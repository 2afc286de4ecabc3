//! The gateway's gRPC codec: prost, except that a message that cannot be decoded is blamed on its
//! sender. tonic's prost codec reports every decode failure as `INTERNAL`, which tells a caller that
//! sent invalid UTF-8 or broken protobuf that the gateway is at fault.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

use crate::api::status;
use crate::pb;

/// How a failure to decode a message of this type is reported; every message type says so itself.
pub(crate) trait DecodeFailure {
    /// The status for `error` while decoding this type.
    fn status(error: &prost::DecodeError) -> Status;
}

/// A request the gateway decodes: a failure is the caller's (`INVALID_ARGUMENT`), logged.
macro_rules! request {
    ($($message:ident),+) => {$(
        impl DecodeFailure for pb::$message {
            fn status(error: &prost::DecodeError) -> Status {
                let status = status::undecodable(concat!("ecsgateway.v1.", stringify!($message)), error);
                tracing::info!(error = status.message(), "refused an undecodable request");
                status
            }
        }
    )+};
}

/// An answer a client of the gateway decodes: a failure is the server's.
macro_rules! answer {
    ($($message:ident),+) => {$(
        impl DecodeFailure for pb::$message {
            fn status(error: &prost::DecodeError) -> Status {
                status::undecodable_answer(concat!("ecsgateway.v1.", stringify!($message)), error)
            }
        }
    )+};
}

request!(
    StopInvocationRequest,
    StopInvocationAndWaitRequest,
    GetInvocationRequest
);
answer!(
    StopInvocationResponse,
    StopInvocationAndWaitResponse,
    GetInvocationResponse
);

/// Prost encoding; decoding failures reported by [`DecodeFailure`].
#[derive(Debug)]
pub(crate) struct GatewayCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for GatewayCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for GatewayCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + DecodeFailure + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = GatewayDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        GatewayDecoder(PhantomData)
    }
}

/// Decodes `U` with prost.
#[derive(Debug)]
pub(crate) struct GatewayDecoder<U>(PhantomData<U>);

impl<U: Message + Default + DecodeFailure> Decoder for GatewayDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| U::status(&e))
    }
}
