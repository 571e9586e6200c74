-- renew: extend this worker's leases and its liveness key.
-- KEYS: leased owner alive. ARGV: worker, lease ms, alive value, alive ms, ids. Returns the ids no longer ours.
local exp = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 5, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', exp, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return lost
