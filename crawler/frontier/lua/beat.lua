-- beat: this worker's liveness key and heartbeat (in the crawl's global slot).
-- KEYS: alive beat. ARGV: worker, alive value, alive ms, heartbeat ("<pages/s> <acked>").
-- The heartbeat is stored as "<Redis time ms> <pages/s> <acked>".
local t = redis.call('TIME')
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) .. ' ' .. ARGV[4])
return 1
