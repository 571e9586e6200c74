-- commit: the commit point of a journaled crawl (one whose shards are spread over a Redis Cluster): store the
-- worker's checkpoint together with the ids of the pages it covers, atomically, in the worker's slot. The acks
-- on the shards follow; whoever finds one of these ids with an expired lease finishes it instead of requeueing
-- it, and a restart of the worker replays the entry. The previous entry was applied before this one is written.
-- KEYS: checkpoint journal. ARGV: worker, checkpoint JSON, entry ("shard:id,id;shard:id", '' for none).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
