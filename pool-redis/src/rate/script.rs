//! The Lua scripts of a shared rate limit: GCRA (the generic cell rate algorithm) with its
//! theoretical arrival time (TAT) in Redis, as redis-cell keeps it, and the adaptive rate
//! (AIMD) beside it.
//!
//! Each key of a limit is a hash `s3pool:{name}:rate:<key>` with `tat` (Redis time, µs),
//! `rate` (operations per second in force), `origin` (where recovery steps are counted
//! from) and `last_dec` (the last decrease). *Book* takes any number of keys, each with how
//! many moments it wants, and returns every moment as an offset from Redis' now: one round
//! trip books a whole batch. *Throttled* lowers a key's rate (at most once per cool-down,
//! for all processes together), restarts its schedule at the lower rate and publishes the
//! key, so every process drops the moments it holds at the old rate. Recovery is computed
//! from Redis time at each booking, so it is shared too. Keys expire once idle, unless their
//! rate is still recovering.

use std::time::Duration;

use pool_core::policy::{Aimd, RateLimit};
use redis::{RedisResult, Script};

use crate::endpoint::Connection;

/// Shared first part: time, settings, and the functions that load, pace and save a key.
/// ARGV[1] adaptive (0/1), ARGV[2] decrease factor, ARGV[3] decrease cool-down µs,
/// ARGV[4] increase fraction, ARGV[5] increase interval µs, ARGV[6] minimum fraction,
/// ARGV[7] how long an idle key is kept, ms, ARGV[8] the booking horizon, µs.
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local adaptive = ARGV[1] == '1'
local dec_factor, cooldown = tonumber(ARGV[2]), tonumber(ARGV[3])
local inc_frac, inc_interval = tonumber(ARGV[4]), tonumber(ARGV[5])
local min_frac, idle_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local horizon = tonumber(ARGV[8])
local function load(key, ceiling)
  local f = redis.call('HMGET', key, 'tat', 'rate', 'origin', 'last_dec')
  local s = {tat = tonumber(f[1]) or now, rate = tonumber(f[2]) or ceiling,
             origin = tonumber(f[3]) or now, last_dec = tonumber(f[4])}
  if s.rate > ceiling then s.rate = ceiling end
  if adaptive and s.rate < ceiling then
    local steps = math.floor((now - s.origin) / inc_interval)
    if steps > 0 then
      s.rate = math.min(ceiling, s.rate + ceiling * inc_frac * steps)
      s.origin = s.origin + steps * inc_interval
    end
  end
  if s.rate >= ceiling then s.origin = now end
  if s.tat < now then s.tat = now end
  return s
end
local function pace(s, ceiling, burst)
  local share = math.max(0, math.min(1, s.rate / ceiling))
  local b = math.max(1, math.floor(burst * share + 0.5))
  local interval = 1000000 / s.rate
  return interval, interval * (b - 1)
end
local function save(key, s, ceiling)
  redis.call('HSET', key, 'tat', string.format('%.3f', s.tat),
             'rate', string.format('%.6f', s.rate), 'origin', string.format('%.3f', s.origin))
  if s.last_dec then redis.call('HSET', key, 'last_dec', string.format('%.3f', s.last_dec)) end
  local keep_ms = math.ceil((s.tat - now) / 1000) + idle_ms
  if s.rate < ceiling then
    local steps = math.ceil((ceiling - s.rate) / (ceiling * inc_frac))
    keep_ms = keep_ms + math.ceil(steps * inc_interval / 1000)
  end
  redis.call('PEXPIRE', key, math.min(keep_ms, 9007199254740991))
end
"#;

/// Books moments: for each key KEYS[i], ARGV[8 + 3i - 2 .. 8 + 3i] are how many moments it
/// wants, its configured rate and its burst. No moment further than the horizon is booked (a
/// process does not hold a long run of moments that others could share, or that throttling
/// would void). Returns, per key, `rate × 1000`, the count, and that many offsets (µs from
/// Redis' now) in order.
const BOOK: &str = r#"
local reply = {}
for i = 1, #KEYS do
  local base = 8 + (i - 1) * 3
  local want, ceiling, burst = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local s = load(KEYS[i], ceiling)
  local interval, tolerance = pace(s, ceiling, burst)
  local offsets = {}
  for _ = 1, want do
    local moment = math.max(now, s.tat - tolerance)
    if moment - now > horizon then break end
    s.tat = s.tat + interval
    table.insert(offsets, math.floor(moment - now))
  end
  table.insert(reply, math.floor(s.rate * 1000))
  table.insert(reply, #offsets)
  for _, offset in ipairs(offsets) do table.insert(reply, offset) end
  save(KEYS[i], s, ceiling)
end
return reply
"#;

/// A throttled attempt on KEYS[1] (ARGV[9] its configured rate, ARGV[10] its burst,
/// ARGV[11] the channel, ARGV[12] the key as published): lowers the rate unless it was
/// lowered within the cool-down, restarts the schedule one interval from now without a
/// burst, and publishes the key. Returns `{rate × 1000, changed}`.
const THROTTLED: &str = r#"
local ceiling, burst = tonumber(ARGV[9]), tonumber(ARGV[10])
local s = load(KEYS[1], ceiling)
local changed = 0
if adaptive and not (s.last_dec and now - s.last_dec < cooldown) then
  local lowered = math.max(ceiling * min_frac, s.rate * dec_factor)
  s.last_dec, s.origin = now, now
  if lowered < s.rate then
    changed = 1
    s.rate = lowered
    local interval, tolerance = pace(s, ceiling, burst)
    s.tat = now + interval + tolerance
    redis.call('PUBLISH', ARGV[11], ARGV[12])
  end
  save(KEYS[1], s, ceiling)
end
return {math.floor(s.rate * 1000), changed}
"#;

/// One key's request in a booking call.
#[derive(Debug, Clone)]
pub(crate) struct Want {
    /// The key as shown (`Display`), and as published when throttled.
    pub(crate) text: String,
    pub(crate) count: usize,
    pub(crate) limit: RateLimit,
}

/// One key's answer: the rate in force and the moments, as offsets from Redis' now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Booked {
    pub(crate) rate: f64,
    pub(crate) offsets: Vec<Duration>,
}

/// The scripts of one limit, with its AIMD settings.
#[derive(Debug, Clone)]
pub(crate) struct RateScripts {
    settings: [String; 8],
    key_prefix: String,
    channel: String,
    book: Script,
    throttled: Script,
}

impl RateScripts {
    /// Scripts for keys named `key_prefix` + key, publishing throttled keys on `channel`.
    pub(crate) fn new(
        aimd: Option<Aimd>,
        idle: Duration,
        horizon: Duration,
        key_prefix: String,
        channel: String,
    ) -> Self {
        let micros = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e6);
        let values = aimd.unwrap_or_default().values();
        let settings = [
            if aimd.is_some() { "1" } else { "0" }.to_owned(),
            values.decrease_factor.to_string(),
            micros(values.decrease_cooldown),
            values.increase_fraction.to_string(),
            micros(values.increase_interval),
            values.min_fraction.to_string(),
            u64::try_from(idle.as_millis())
                .unwrap_or(u64::MAX)
                .min(1 << 53)
                .to_string(),
            micros(horizon),
        ];
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Self {
            settings,
            key_prefix,
            channel,
            book: script(BOOK),
            throttled: script(THROTTLED),
        }
    }

    /// The channel throttled keys are published on.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    fn invocation<'a>(&'a self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for value in &self.settings {
            invocation.arg(value);
        }
        invocation
    }

    /// Books `want.count` moments for each key, in one round trip.
    pub(crate) async fn book(
        &self,
        conn: &mut Connection,
        wants: &[Want],
    ) -> RedisResult<Vec<Booked>> {
        let mut invocation = self.invocation(&self.book);
        for want in wants {
            invocation
                .key(format!("{}{}", self.key_prefix, want.text))
                .arg(want.count)
                .arg(want.limit.per_second())
                .arg(want.limit.burst());
        }
        let reply: Vec<i64> = invocation.invoke_async(conn).await?;
        parse_booked(&reply, wants.len())
    }

    /// Reports a throttled attempt on the key `text`; the rate in force and whether it was
    /// lowered now.
    pub(crate) async fn throttled(
        &self,
        conn: &mut Connection,
        text: &str,
        limit: RateLimit,
    ) -> RedisResult<(f64, bool)> {
        let mut invocation = self.invocation(&self.throttled);
        invocation
            .key(format!("{}{}", self.key_prefix, text))
            .arg(limit.per_second())
            .arg(limit.burst())
            .arg(&self.channel)
            .arg(text);
        let (rate, changed): (i64, i64) = invocation.invoke_async(conn).await?;
        Ok((rate as f64 / 1000.0, changed == 1))
    }
}

fn parse_booked(reply: &[i64], keys: usize) -> RedisResult<Vec<Booked>> {
    let malformed = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the booking script returned a malformed reply",
        ))
    };
    let mut out = Vec::with_capacity(keys);
    let mut rest = reply;
    for _ in 0..keys {
        let [rate, count, tail @ ..] = rest else {
            return Err(malformed());
        };
        let count = usize::try_from(*count).map_err(|_| malformed())?;
        if tail.len() < count {
            return Err(malformed());
        }
        let offsets = tail[..count]
            .iter()
            .map(|&micros| Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
            .collect();
        out.push(Booked {
            rate: *rate as f64 / 1000.0,
            offsets,
        });
        rest = &tail[count..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_per_key() {
        let booked = parse_booked(&[3_500_000, 2, 0, 285, 1_000, 0], 2).unwrap();
        assert_eq!(
            booked,
            [
                Booked {
                    rate: 3_500.0,
                    offsets: vec![Duration::ZERO, Duration::from_micros(285)],
                },
                Booked {
                    rate: 1.0,
                    offsets: vec![],
                },
            ]
        );
        assert!(parse_booked(&[1, 3, 0], 1).is_err());
        assert!(parse_booked(&[], 1).is_err());
    }
}
