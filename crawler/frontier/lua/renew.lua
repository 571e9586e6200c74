-- renew: extend this worker's leases and its liveness key, and record its heartbeat.
-- KEYS: leased owner alive beat. ARGV: worker, lease ms, alive value, alive ms, heartbeat ("<pages/s> <acked>"),
-- ids. Returns the ids no longer ours. The heartbeat is stored as "<Redis time ms> <pages/s> <acked>".
local now = now_ms()
local exp = now + tonumber(ARGV[2])
local lost = {}
for i = 6, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', exp, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], now .. ' ' .. ARGV[5])
return lost
