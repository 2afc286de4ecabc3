//! The caller's deadline, read from the `grpc-timeout` header.
//!
//! Hand-written because tonic keeps its parser private. The gateway answers `DEADLINE_EXCEEDED`
//! itself a little before the deadline, so the caller gets our status rather than tonic's
//! `CANCELLED` from its own timer.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The header gRPC clients send their timeout in.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H M S m u n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    // ASCII only, so splitting off the last byte cannot cut a character in two.
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Time kept back from the caller's budget so our answer reaches it before its own timer fires.
pub fn reserve(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(20))
}

/// The instant by which upstream work must end, when the caller set a deadline.
pub fn from_metadata(metadata: &MetadataMap, started: Instant) -> Option<Instant> {
    let timeout = parse_grpc_timeout(metadata.get(GRPC_TIMEOUT_HEADER)?.to_str().ok()?)?;
    Some(started + timeout.saturating_sub(reserve(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in ["", "S", "10", "123456789S", "1x", "-1S", "1.5S", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_reserve_is_small_and_bounded() {
        assert_eq!(
            reserve(Duration::from_millis(100)),
            Duration::from_millis(10)
        );
        assert_eq!(reserve(Duration::from_secs(30)), Duration::from_millis(20));
        assert_eq!(
            reserve(Duration::from_micros(500)),
            Duration::from_millis(1)
        );
    }
}
