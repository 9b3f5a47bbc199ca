//! The Lua scripts: each step on the shared state is one atomic script.
//!
//! State of a limit (see [`LimitKeys`]): `holders`, a sorted set of leases scored by expiry
//! (Redis server time in ms, so clients' clocks do not matter); `limit`; `agents`, how many
//! leases each agent (one per process and limit) holds; `waiting`, agents that want more.
//! Every script first drops expired leases and waiters, so a dead holder's permits come back
//! at the latest one lease TTL after its last renewal.
//!
//! Fair share: while other agents wait, an agent is granted at most an equal share of what the
//! agents that are not waiting leave, so a busy process cannot starve a newcomer; room is
//! always granted to someone while anyone waits (the share is never below what is left).
//! An agent within its share may pass a lease that ends to its next waiter itself (the lease
//! stays counted and renewed); it learns at its next call, at most one backoff later, when
//! that is no longer so (another agent waits, or the limit was lowered: which also wakes it).

use redis::{RedisResult, Script};

use crate::endpoint::Connection;
use crate::keys::LimitKeys;

/// Shared first part of every script: names, server time, expiry, the limit in force.
/// ARGV[1] the limit to store if the key is gone (the last one this process was told),
/// ARGV[2] lease TTL ms, ARGV[3] agent id, ARGV[4] wake-up channel.
const PRELUDE: &str = r#"
local holders, limit_key, agents, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, agent, channel = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function count_down(owner, n)
  if redis.call('HINCRBY', agents, owner, -n) <= 0 then redis.call('HDEL', agents, owner) end
end
local expired = redis.call('ZRANGEBYSCORE', holders, '-inf', now)
for _, member in ipairs(expired) do
  local owner = string.match(member, '^(.*):[^:]*$')
  if owner then count_down(owner, 1) end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', holders, '-inf', now) end
redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
local limit = tonumber(redis.call('GET', limit_key))
if not limit then
  limit = tonumber(ARGV[1])
  redis.call('SET', limit_key, limit)
end
"#;

/// Releases this agent's leases ARGV[7..] (sequence numbers), then grants up to ARGV[5]
/// new leases numbered from ARGV[6]. Returns `{granted, limit, held, keep}`; `keep` is 1 if
/// the agent is within the limit and its fair share, so it may pass a lease that ends to
/// another of its own waiters without a round trip.
const EXCHANGE: &str = r#"
local want, first = tonumber(ARGV[5]), tonumber(ARGV[6])
local released = 0
for i = 7, #ARGV do
  released = released + redis.call('ZREM', holders, agent .. ':' .. ARGV[i])
end
if released > 0 then count_down(agent, released) end
local held = redis.call('ZCARD', holders)
local mine = tonumber(redis.call('HGET', agents, agent) or '0')
local others, held_by_waiters = 0, mine
for _, other in ipairs(redis.call('ZRANGE', waiting, 0, -1)) do
  if other ~= agent then
    others = others + 1
    held_by_waiters = held_by_waiters + tonumber(redis.call('HGET', agents, other) or '0')
  end
end
local share = limit
if others > 0 then
  share = math.ceil((limit - (held - held_by_waiters)) / (others + 1))
end
local grant = 0
if want > 0 and held < limit then
  grant = math.max(0, math.min(want, limit - held, share - mine))
  for i = 0, grant - 1 do
    redis.call('ZADD', holders, now + ttl, agent .. ':' .. (first + i))
  end
  if grant > 0 then redis.call('HINCRBY', agents, agent, grant) end
  held, mine = held + grant, mine + grant
end
local still_waiting = 0
if grant < want then
  redis.call('ZADD', waiting, now + ttl, agent)
  still_waiting = 1
else
  redis.call('ZREM', waiting, agent)
end
if (released > 0 or #expired > 0) and held < limit
    and redis.call('ZCARD', waiting) > still_waiting then
  redis.call('PUBLISH', channel, 'room')
end
local keep = 0
if held <= limit and mine <= share then keep = 1 end
return {grant, limit, held, keep}
"#;

/// Extends this agent's leases ARGV[5..] to a full TTL. A lease that is gone (it expired
/// while this agent could not reach Redis, or Redis lost it in a restart or a failover) is
/// taken back even above the limit: its task is running, so it counts, and no new lease is
/// granted until fewer than the limit are held. Returns `{limit, held, restored}`.
const RENEW: &str = r#"
local restored = 0
for i = 5, #ARGV do
  local member = agent .. ':' .. ARGV[i]
  if redis.call('ZSCORE', holders, member) then
    redis.call('ZADD', holders, 'XX', now + ttl, member)
  else
    redis.call('ZADD', holders, now + ttl, member)
    restored = restored + 1
  end
end
if restored > 0 then redis.call('HINCRBY', agents, agent, restored) end
return {limit, redis.call('ZCARD', holders), restored}
"#;

/// Sets the limit to ARGV[5] and wakes every waiting agent.
const SET_LIMIT: &str = r#"
redis.call('SET', limit_key, ARGV[5])
redis.call('PUBLISH', channel, 'limit')
return tonumber(ARGV[5])
"#;

/// What an exchange returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exchanged {
    /// New leases, numbered from the `first` passed in.
    pub(crate) granted: u64,
    /// The limit in force.
    pub(crate) limit: u64,
    /// Leases held by everyone after the exchange.
    pub(crate) held: u64,
    /// Whether the agent may hand an ending lease straight to its next waiter.
    pub(crate) keep: bool,
}

/// What a renewal returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Renewed {
    pub(crate) limit: u64,
    /// Leases held by everyone after the renewal.
    pub(crate) held: u64,
    /// This agent's leases that were gone and were taken back.
    pub(crate) restored: u64,
}

/// The scripts of one limit, bound to its keys and to one agent.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    keys: LimitKeys,
    agent: String,
    ttl_ms: u64,
    exchange: Script,
    renew: Script,
    set_limit: Script,
}

impl Scripts {
    pub(crate) fn new(keys: LimitKeys, agent: String, ttl_ms: u64) -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Self {
            keys,
            agent,
            ttl_ms,
            exchange: script(EXCHANGE),
            renew: script(RENEW),
            set_limit: script(SET_LIMIT),
        }
    }

    pub(crate) fn keys(&self) -> &LimitKeys {
        &self.keys
    }

    fn invocation<'a>(&'a self, script: &'a Script, seed: u64) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys.script_keys() {
            invocation.key(key);
        }
        invocation
            .arg(seed)
            .arg(self.ttl_ms)
            .arg(&self.agent)
            .arg(&self.keys.channel);
        invocation
    }

    /// Releases `released`, then asks for `want` leases numbered from `first`.
    pub(crate) async fn exchange(
        &self,
        conn: &mut Connection,
        seed: u64,
        released: &[u64],
        want: u64,
        first: u64,
    ) -> RedisResult<Exchanged> {
        let mut invocation = self.invocation(&self.exchange, seed);
        invocation.arg(want).arg(first).arg(released);
        let (granted, limit, held, keep): (u64, u64, u64, u8) =
            invocation.invoke_async(conn).await?;
        Ok(Exchanged {
            granted,
            limit,
            held,
            keep: keep == 1,
        })
    }

    /// Renews the leases numbered `held`.
    pub(crate) async fn renew(
        &self,
        conn: &mut Connection,
        seed: u64,
        held: &[u64],
    ) -> RedisResult<Renewed> {
        let mut invocation = self.invocation(&self.renew, seed);
        invocation.arg(held);
        let (limit, held, restored): (u64, u64, u64) = invocation.invoke_async(conn).await?;
        Ok(Renewed {
            limit,
            held,
            restored,
        })
    }

    /// Sets the limit for every process and wakes their waiting agents.
    pub(crate) async fn set_limit(&self, conn: &mut Connection, limit: u64) -> RedisResult<u64> {
        let mut invocation = self.invocation(&self.set_limit, limit);
        invocation.arg(limit);
        invocation.invoke_async(conn).await
    }
}
