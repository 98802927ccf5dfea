-- Under the chunk lock, before computing: is the chunk still wanted? If no document references it, it
-- leaves the pending state ('unreferenced'), so an ingest that takes it up again starts a new generation
-- (a new job) instead of counting on this job, which is about to end without computing.
-- KEYS[1] refs set, KEYS[2] chunk hash, KEYS[3] pending zset; ARGV[1] chunk key
-- Returns 1 when the chunk is wanted.
if redis.call('SCARD', KEYS[1]) > 0 then return 1 end
if redis.call('HGET', KEYS[2], 'state') == 'pending' then
  redis.call('HSET', KEYS[2], 'state', 'unreferenced')
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 0
