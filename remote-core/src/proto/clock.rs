//! Saturating time arithmetic shared by the keepalive timer here and the
//! driver's deadlines.

use std::time::Duration;

use web_time::Instant;

/// What "never" means for a deadline or timer: about 30 years.
pub(crate) const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `at + d`, saturating: a duration too long for the clock (such as
/// `Duration::MAX`) means about 30 years from `at`, i.e. never.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    // (A clock within 30 years of its end does not exist; `at` is only a
    // fallback that cannot panic.)
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_adds_and_saturates_instead_of_panicking() {
        let t0 = Instant::now();
        assert_eq!(
            later(t0, Duration::from_secs(5)),
            t0 + Duration::from_secs(5)
        );
        assert_eq!(later(t0, Duration::MAX), t0 + FAR);
    }
}
