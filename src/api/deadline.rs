//! A call's deadline: the caller's `grpc-timeout`, capped by the gateway's own ceiling.
//!
//! The parser is hand-written because tonic keeps its own private (and silently ignores a malformed
//! header). The gateway answers `DEADLINE_EXCEEDED` itself a little before the caller's deadline, so
//! the caller gets our status rather than tonic's `CANCELLED` from its own timer.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The header gRPC clients send their timeout in.
pub(crate) const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H M S m u n`).
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
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
pub(crate) fn reserve(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(20))
}

/// The `grpc-timeout` header is present but not a valid timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the grpc-timeout header must be 1 to 8 digits followed by a unit (H, M, S, m, u or n)")]
pub(crate) struct MalformedTimeout;

/// The instant by which all work on a call must end: the caller's deadline (less a small reserve)
/// or `started + max_call`, whichever comes first. A malformed `grpc-timeout` is an error rather
/// than no deadline at all.
pub(crate) fn for_call(
    metadata: &MetadataMap,
    started: Instant,
    max_call: Duration,
) -> Result<Instant, MalformedTimeout> {
    let ceiling = started + max_call;
    let Some(value) = metadata.get(GRPC_TIMEOUT_HEADER) else {
        return Ok(ceiling);
    };
    let timeout = value
        .to_str()
        .ok()
        .and_then(parse_grpc_timeout)
        .ok_or(MalformedTimeout)?;
    Ok(ceiling.min(started + timeout.saturating_sub(reserve(timeout))))
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

    fn metadata(timeout: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(t) = timeout {
            m.insert(GRPC_TIMEOUT_HEADER, t.parse().unwrap());
        }
        m
    }

    #[test]
    fn the_ceiling_bounds_calls_without_or_with_a_longer_timeout() {
        let start = Instant::now();
        let max = Duration::from_secs(25);
        assert_eq!(for_call(&metadata(None), start, max), Ok(start + max));
        assert_eq!(for_call(&metadata(Some("1H")), start, max), Ok(start + max));
        assert_eq!(
            for_call(&metadata(Some("100m")), start, max),
            Ok(start + Duration::from_millis(90))
        );
    }

    #[test]
    fn a_malformed_header_is_an_error_not_an_absent_deadline() {
        let start = Instant::now();
        for bad in ["abc", "-1S", "1SS", "123456789S"] {
            assert_eq!(
                for_call(&metadata(Some(bad)), start, Duration::from_secs(25)),
                Err(MalformedTimeout),
                "{bad}"
            );
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
