-- Mark a chunk failed unless it became ready meanwhile.
-- KEYS[1] chunk hash, KEYS[2] pending zset, KEYS[3] failed zset
-- ARGV[1] error, ARGV[2] now (ISO), ARGV[3] chunk key, ARGV[4] now (ms)
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[1], 'updatedAt', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
