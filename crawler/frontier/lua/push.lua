-- push: dedup and enqueue a batch of requests (all of one shard).
-- KEYS: seq req ready stats, then the queue and seen keys the requests refer to.
-- ARGV: mode ('p': host-partitioned workers; anything else: shared), then per request: seen key index
-- (0: dont_filter), seen member, queue key index, host, priority, data, and with 'p' its partition.
-- Returns one character per request, '1' when it was new (queued) and '0' when it had been seen.
local partitioned = ARGV[1] == 'p'
local step = partitioned and 7 or 6
local prefix = string.sub(KEYS[1], 1, -4)  -- KEYS[1] is <prefix>seq
local added, fresh_seen = 0, 0
local flags = {}
for b = 2, #ARGV - 1, step do
  local sk = tonumber(ARGV[b])
  local fresh = true
  if sk > 0 then
    fresh = redis.call('SADD', KEYS[sk], ARGV[b + 1]) == 1
    if fresh then fresh_seen = fresh_seen + 1 end
  end
  if fresh then
    local id = redis.call('INCR', KEYS[1])
    local score = string.format('%d', id - tonumber(ARGV[b + 4]) * 4294967296)
    local host = ARGV[b + 3]
    redis.call('HSET', KEYS[2], id, score .. ' ' .. host .. ' ' .. ARGV[b + 5])
    redis.call('ZADD', KEYS[tonumber(ARGV[b + 2])], score, id)
    if partitioned then
      local p = ARGV[b + 6]
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
