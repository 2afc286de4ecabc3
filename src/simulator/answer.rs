//! What the simulator answers an ECS request with: success, a listing, or an ECS error, and the
//! errors every action shares.

/// The answer to a request: success, or an ECS error code with its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 with a RequestId.
    Ok,
    /// 200 with a RequestId and these fields.
    Json(serde_json::Map<String, serde_json::Value>),
    /// An ECS error.
    Error {
        /// HTTP status.
        status: u16,
        /// ECS code.
        code: &'static str,
        /// ECS message.
        message: String,
    },
}

/// An ECS error answer.
pub(crate) fn error(status: u16, code: &'static str, message: impl Into<String>) -> Answer {
    Answer::Error {
        status,
        code,
        message: message.into(),
    }
}

/// ECS's answer for a required parameter that was not sent.
pub(crate) fn missing(name: &str) -> Answer {
    error(
        400,
        "MissingParameter",
        format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    )
}
