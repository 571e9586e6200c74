-- push: dedup and enqueue a batch of requests.
-- KEYS: seq req ready stats, then the queue and seen keys the requests refer to.
-- ARGV: six per request: seen key index (0: dont_filter), seen member, queue key index, host, priority, data.
-- Returns one character per request, '1' when it was new (queued) and '0' when it had been seen.
local added, fresh_seen = 0, 0
local flags = {}
for b = 0, #ARGV - 1, 6 do
  local sk = tonumber(ARGV[b + 1])
  local fresh = true
  if sk > 0 then
    fresh = redis.call('SADD', KEYS[sk], ARGV[b + 2]) == 1
    if fresh then fresh_seen = fresh_seen + 1 end
  end
  if fresh then
    local id = redis.call('INCR', KEYS[1])
    local score = string.format('%d', id - tonumber(ARGV[b + 5]) * 4294967296)
    local host = ARGV[b + 4]
    redis.call('HSET', KEYS[2], id, score .. ' ' .. host .. ' ' .. ARGV[b + 6])
    redis.call('ZADD', KEYS[tonumber(ARGV[b + 3])], score, id)
    redis.call('ZADD', KEYS[3], 'NX', 0, host)
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
