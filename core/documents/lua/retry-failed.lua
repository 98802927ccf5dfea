-- The reconciler gives a failed chunk another generation.
-- KEYS[1] chunk hash, KEYS[2] pending zset, KEYS[3] failed zset; ARGV[1] chunk key, ARGV[2] now (ms),
-- ARGV[3] now (ISO). Returns the new generation, or false (the index entry was stale and is dropped).
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return false
end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'state', 'pending', 'updatedAt', ARGV[3])
redis.call('HDEL', KEYS[1], 'error')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return gen
