-- push: dedup and enqueue a batch of requests (all of one shard).
-- KEYS: seq req ready stats. A request's seen bucket and host queue are keys of the same shard, named here from
-- its prefix (`<prefix>seen:<bucket>`, `<prefix>q:<host>`), so in the same slot.
-- ARGV: mode ('p': host-partitioned workers; anything else: shared), then one argument per request:
-- '<seen bucket> <seen member> <priority> <partition> <host> <data>' (seen bucket '-': dont_filter;
-- partition: 0 unless 'p'). One argument, not seven: the client's cost is per argument, not per byte.
-- Returns one character per request, '1' when it was new (queued) and '0' when it had been seen.
local partitioned = ARGV[1] == 'p'
local prefix = string.sub(KEYS[1], 1, -4)  -- KEYS[1] is <prefix>seq
local added, fresh_seen = 0, 0
local flags = {}
for b = 2, #ARGV do
  local bucket, member, priority, p, record, host =
    string.match(ARGV[b], '^(%S+) (%d+) (%-?%d+) (%d+) ((%S+) .*)$')
  local fresh = true
  if bucket ~= '-' then
    fresh = redis.call('SADD', prefix .. 'seen:' .. bucket, member) == 1
    if fresh then fresh_seen = fresh_seen + 1 end
  end
  if fresh then
    local id = redis.call('INCR', KEYS[1])
    local score = string.format('%d', id - tonumber(priority) * 4294967296)
    redis.call('HSET', KEYS[2], id, score .. ' ' .. record)
    redis.call('ZADD', prefix .. 'q:' .. host, score, id)
    if partitioned then
      if redis.call('ZADD', prefix .. 'pready:' .. p, 'NX', 0, host) == 1 then
        redis.call('HSET', prefix .. 'hostp', host, p)
        redis.call('ZADD', prefix .. 'pwork', 'NX', 0, p)
      end
    else
      redis.call('ZADD', KEYS[3], 'NX', 0, host)
    end
    added = added + 1
  end
  flags[#flags + 1] = fresh and '1' or '0'
end
if added > 0 then
  redis.call('HINCRBY', KEYS[4], 'queued', added)
  redis.call('HINCRBY', KEYS[4], 'pushed', added)
end
if fresh_seen > 0 then redis.call('HINCRBY', KEYS[4], 'seen', fresh_seen) end
return table.concat(flags)
