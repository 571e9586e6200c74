-- members: the live workers of a crawl (host-partitioned workers divide the partitions among them), and this
-- worker's own membership renewed. KEYS: members. ARGV: worker, alive ms (0: leave the crawl).
-- Returns the workers whose membership has not expired, this one included unless it left.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)  -- gone for an hour: forget them
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
