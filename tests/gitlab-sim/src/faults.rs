//! Run-time misbehaviour of the API: injected failures and the `GET /projects` rate limit, with
//! the answers GitLab (or the nginx in front of it) gives. Sources are listed in FIXTURES.md.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::config::{RateLimit, RateLimitStyle};
use crate::server::{set_header, with_body};

/// Failures queued with `fail_next` and the random failure rate.
#[derive(Default)]
pub(crate) struct Faults {
    /// `(remaining, status)` in order.
    queued: VecDeque<(usize, u16)>,
    /// Chance per request, 0.0 to 1.0, and the status to answer with.
    rate: f64,
    rate_status: u16,
    rng: u64,
}

impl Faults {
    pub(crate) fn fail_next(&mut self, n: usize, status: u16) {
        if n > 0 {
            self.queued.push_back((n, status));
        }
    }

    pub(crate) fn set_rate(&mut self, rate: f64, status: u16) {
        self.rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        self.rate_status = status;
    }

    pub(crate) fn clear(&mut self) {
        self.queued.clear();
        self.rate = 0.0;
    }

    /// The status this request should fail with, if any.
    pub(crate) fn take(&mut self) -> Option<u16> {
        if let Some(front) = self.queued.front_mut() {
            let status = front.1;
            front.0 -= 1;
            if front.0 == 0 {
                self.queued.pop_front();
            }
            return Some(status);
        }
        if self.rate > 0.0 {
            // SplitMix64 over a counter: reproducible from the start of the simulator.
            self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = self.rng;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= x >> 31;
            let draw = (x >> 11) as f64 / (1u64 << 53) as f64;
            if draw < self.rate {
                return Some(self.rate_status);
            }
        }
        None
    }
}

/// The answer for an injected failure: what nginx or GitLab sends for that status.
pub(crate) fn fault_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = code.canonical_reason().unwrap_or("Error");
    match status {
        // GitLab's nginx serves public/502.html when Puma does not answer in time or at all.
        502 => html(code, GITLAB_502_PAGE),
        503 | 504 => {
            let page = format!(
                "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            );
            with_body(code, "text/html", Body::from(page))
        }
        // A Rack::Attack style throttle without the informational headers.
        429 => {
            let mut response = with_body(code, "text/plain", Body::from(RETRY_LATER));
            set_header(response.headers_mut(), "retry-after", "1");
            response
        }
        // Grape's `rescue_from :all` in lib/api/api.rb and `render_api_error!` for the rest.
        _ => with_body(
            code,
            "application/json",
            Body::from(serde_json::json!({"message": format!("{status} {reason}")}).to_string()),
        ),
    }
}

fn html(code: StatusCode, page: &'static str) -> Response {
    with_body(code, "text/html", Body::from(page))
}

/// `Gitlab::Throttle::DEFAULT_RATE_LIMITING_RESPONSE_TEXT` plus the newline GitLab appends.
pub(crate) const RETRY_LATER: &str = "Retry later\n";

/// `API::Helpers::RateLimiter#check_rate_limit!` with the default message.
pub(crate) const APPLICATION_LIMIT_BODY: &str =
    r#"{"message":{"error":"This endpoint has been requested too many times. Try again later."}}"#;

const GITLAB_502_PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta content="width=device-width, initial-scale=1, maximum-scale=1" name="viewport">
<title>GitLab is not responding (502)</title>
</head>
<body>
<h1>502</h1>
<div class="container">
<h3>Whoops, GitLab is taking too much time to respond.</h3>
<hr />
<p>Try refreshing the page, or going back and attempting the action again.</p>
</div>
</body>
</html>
"#;

/// Counts `GET /projects` requests against the configured [`RateLimit`].
#[derive(Default)]
pub(crate) struct Limiter {
    count: u32,
    /// Rack::Attack: the epoch-aligned window the count belongs to.
    window_key: u64,
    /// Application limits: when the current window started.
    started: Option<Instant>,
}

/// What the limiter decided for one request.
pub(crate) enum Verdict {
    /// Allowed; the informational headers to add (empty unless Rack::Attack style).
    Allowed(Vec<(&'static str, String)>),
    Limited(Response),
}

impl Limiter {
    pub(crate) fn reset(&mut self) {
        *self = Limiter::default();
    }

    /// Counts one request (GitLab counts throttled ones too) and decides.
    pub(crate) fn hit(&mut self, limit: &RateLimit, name: &str) -> Verdict {
        match limit.style {
            RateLimitStyle::RackAttack => self.rack_attack(limit, name),
            RateLimitStyle::RetryAfterOnly | RateLimitStyle::NoHeaders => self.application(limit),
        }
    }

    /// `Gitlab::RackAttack::RequestThrottleData`: epoch-aligned period, limit normalised to 60 s.
    fn rack_attack(&mut self, limit: &RateLimit, name: &str) -> Verdict {
        let period = limit.window.as_secs().max(1);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let key = now / period;
        if key != self.window_key {
            self.window_key = key;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        let observed = self.count;
        let retry_after = period - now % period;
        let reset = now + retry_after;
        let rounded_limit = (u64::from(limit.requests) * 60).div_ceil(period);
        let mut headers = vec![
            ("ratelimit-name", name.to_string()),
            ("ratelimit-limit", rounded_limit.to_string()),
            ("ratelimit-observed", observed.to_string()),
            ("ratelimit-remaining", limit.requests.saturating_sub(observed).to_string()),
            ("ratelimit-reset", reset.to_string()),
        ];
        if observed <= limit.requests {
            return Verdict::Allowed(headers);
        }
        headers.push(("retry-after", retry_after.to_string()));
        headers.push(("ratelimit-resettime", http_date(reset)));
        let mut response = with_body(StatusCode::TOO_MANY_REQUESTS, "text/plain", Body::from(RETRY_LATER));
        add_headers(response.headers_mut(), &headers);
        Verdict::Limited(response)
    }

    /// `Gitlab::ApplicationRateLimiter`: the window starts with the first request.
    fn application(&mut self, limit: &RateLimit) -> Verdict {
        let now = Instant::now();
        if self.started.is_none_or(|s| now.duration_since(s) >= limit.window) {
            self.started = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count <= limit.requests {
            return Verdict::Allowed(Vec::new());
        }
        let mut response =
            with_body(StatusCode::TOO_MANY_REQUESTS, "application/json", Body::from(APPLICATION_LIMIT_BODY));
        if limit.style == RateLimitStyle::RetryAfterOnly {
            // `too_many_requests!(..., retry_after: interval)`: the whole interval, whatever is left.
            let secs = whole_seconds_up(limit.window);
            set_header(response.headers_mut(), "retry-after", &secs.to_string());
        }
        Verdict::Limited(response)
    }
}

pub(crate) fn add_headers(headers: &mut HeaderMap, list: &[(&'static str, String)]) {
    for (name, value) in list {
        set_header(headers, name, value);
    }
}

fn whole_seconds_up(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// `Time#httpdate`: `Tue, 05 Jan 2021 11:00:00 GMT`.
fn http_date(unix: u64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    // RFC 2822 gives "+0000"; HTTP dates say "GMT".
    t.format(&Rfc2822).map(|s| s.replace(" +0000", " GMT")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_failures_come_first_then_stop() {
        let mut f = Faults::default();
        f.fail_next(2, 502);
        f.fail_next(1, 500);
        assert_eq!(f.take(), Some(502));
        assert_eq!(f.take(), Some(502));
        assert_eq!(f.take(), Some(500));
        assert_eq!(f.take(), None);
    }

    #[test]
    fn failure_rate_is_roughly_honoured() {
        let mut f = Faults::default();
        f.set_rate(0.25, 503);
        let failed = (0..4000).filter(|_| f.take().is_some()).count();
        assert!((800..1200).contains(&failed), "{failed}");
        f.set_rate(0.0, 503);
        assert!((0..100).all(|_| f.take().is_none()));
    }

    #[test]
    fn http_date_format() {
        assert_eq!(http_date(1_609_844_400), "Tue, 05 Jan 2021 11:00:00 GMT");
    }

    #[test]
    fn rack_attack_limit_is_per_minute() {
        let mut l = Limiter::default();
        let limit = RateLimit { requests: 2000, window: Duration::from_secs(600), style: RateLimitStyle::RackAttack };
        match l.hit(&limit, "throttle_authenticated_api") {
            Verdict::Allowed(h) => {
                assert!(h.contains(&("ratelimit-limit", "200".to_string())));
                assert!(h.contains(&("ratelimit-remaining", "1999".to_string())));
            }
            Verdict::Limited(_) => panic!("limited"),
        }
    }
}
