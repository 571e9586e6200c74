-- pop: lease up to `limit` requests from the given hosts, within each host's allowance and every limit the
-- processes share: the host's pause (Retry-After), its in-flight cap (slots) and its rate (a GCRA bucket).
-- With no hosts it only reports: then it is how a process learns which hosts are ready.
-- KEYS: ready, my-leases (of one shard: the hosts a worker picks are grouped by shard, one call each). The
-- shard's other keys, the host queues among them, are named from its prefix (`keys_of`), so in the same slot.
-- ARGV: worker, lease ms, limit, prefix, max hosts, horizon ms, cap (in-flight per host, 0: none), mode,
--   then the ids this worker is done with (their slots come back), joined by commas ('' for none);
--   then the pauses it was asked for (Retry-After): a count, then host and ms for each;
--   then one argument per host (the client's cost is per argument): '<allowance> <interval ms (0: unlimited)>
--   <set> <host>', set 1: store the interval as the host's shared rate, because this worker's own rate for it
--   changed; 0: use the shared rate when there is one.
-- GCRA: k requests may start now when tat + (k - 1) * interval - tau <= now; each start moves tat an interval.
-- Returns {now, leases in limbo (journaled crawls), 2 * popped, id, record, ..., then host, start, ... for the
-- hosts that may start within the horizon, longest-waiting first}.
local K = keys_of(ARGV[4], ARGV[8])
local now = now_ms()
reclaim(K, now)
local exp = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cap = tonumber(ARGV[7])
for id in string.gmatch(ARGV[9], '%d+') do free_slot(K, id, now) end
local a = 10
local n = tonumber(ARGV[a])
for i = 0, n - 1 do
  local host, untill = ARGV[a + 1 + 2 * i], now + tonumber(ARGV[a + 2 + 2 * i])
  if untill > tonumber(redis.call('HGET', K.pause, host) or '0') then
    redis.call('HSET', K.pause, host, untill)
    redis.call('ZADD', K.ready, 'XX', 'GT', untill, host)
  end
end
a = a + 2 * n + 1
local out, taken = {}, 0
for b = a, #ARGV do
  local allowance, interval_arg, set, host = string.match(ARGV[b], '^(%d+) (%S+) ([01]) (%S+)$')
  local allow = math.min(tonumber(allowance), limit - taken)
  local interval = tonumber(interval_arg)
  local qk = K.prefix .. 'q:' .. host
  if set == '1' then
    if interval > 0 then redis.call('HSET', K.rate, host, interval) else redis.call('HDEL', K.rate, host) end
  else
    local shared = redis.call('HGET', K.rate, host)
    if shared then interval = tonumber(shared) end
  end
  local tau = math.max(0, BUCKET_MS - interval)
  local hold = 0  -- when the host may next start, if something holds it back
  local paused = tonumber(redis.call('HGET', K.pause, host) or '0')
  if paused > now then
    allow, hold = 0, paused
  elseif paused > 0 then
    redis.call('HDEL', K.pause, host)
  end
  if allow > 0 and cap > 0 then
    local free = cap - tonumber(redis.call('HGET', K.slots, host) or '0')
    -- Fairness: a worker that found the host full recently is served next, so one worker that keeps
    -- its slots busy does not keep them all; the others leave it one.
    local waiter = redis.call('HGET', K.waiting, host)
    if waiter then
      local who, since = string.match(waiter, '^(.*) (%d+)$')
      if who == ARGV[1] or now - tonumber(since) > WAITING_MS then
        redis.call('HDEL', K.waiting, host)
        waiter = false
      elseif free > 0 then
        free = free - 1
      end
    end
    if free < allow then allow = free end
    if allow <= 0 then
      hold = now + BUCKET_MS  -- until a slot comes back (free_slot moves it forward)
      if not waiter then redis.call('HSET', K.waiting, host, ARGV[1] .. ' ' .. now) end
    end
  end
  local tat = now
  if allow > 0 and interval > 0 then
    tat = math.max(tonumber(redis.call('HGET', K.tat, host) or '0'), now)
    local k = math.floor((now + tau - tat) / interval) + 1
    if k < allow then allow = k end
  end
  local got = 0
  if allow > 0 then
    local popped = redis.call('ZPOPMIN', qk, allow)
    got = #popped / 2
    for j = 1, got do
      local id = popped[2 * j - 1]
      redis.call('ZADD', K.leased, exp, id)
      redis.call('HSET', K.owner, id, ARGV[1])
      redis.call('SADD', KEYS[2], id)
      if cap > 0 then redis.call('HSET', K.slot, id, host) end
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', K.req, id)
    end
    taken = taken + got
  end
  if got > 0 then
    redis.call('HINCRBY', K.stats, 'queued', -got)
    if cap > 0 then redis.call('HINCRBY', K.slots, host, got) end
    if interval > 0 then
      tat = tat + got * interval
      redis.call('HSET', K.tat, host, tat)
    end
  end
  if redis.call('ZCARD', qk) == 0 then
    redis.call('ZREM', K.ready, host)
  elseif hold > 0 then
    redis.call('ZADD', K.ready, 'XX', hold, host)
  elseif interval > 0 then
    redis.call('ZADD', K.ready, 'XX', tat - tau, host)
  elseif got > 0 then
    redis.call('ZADD', K.ready, 'XX', now, host)
  end
  if taken >= limit then break end
end
local limbo = 0
if K.journaled then limbo = redis.call('SCARD', K.limbo) end
local reply = {tostring(now), limbo, #out}
for _, v in ipairs(out) do reply[#reply + 1] = v end
local hosts = redis.call('ZRANGEBYSCORE', K.ready, '-inf', now + tonumber(ARGV[6]), 'WITHSCORES', 'LIMIT', 0,
                         tonumber(ARGV[5]))
for _, v in ipairs(hosts) do reply[#reply + 1] = v end
return reply
