-- renew: extend this worker's leases on one shard (a lease in limbo that is still ours comes back).
-- KEYS: leased owner limbo. ARGV: worker, lease ms, ids. Returns the ids no longer ours.
local now = redis.call('TIME')
local exp = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    if redis.call('ZADD', KEYS[1], 'XX', 'CH', exp, ARGV[i]) == 0 and redis.call('SREM', KEYS[3], ARGV[i]) == 1 then
      redis.call('ZADD', KEYS[1], exp, ARGV[i])
    end
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
