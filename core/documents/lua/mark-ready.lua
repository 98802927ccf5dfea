-- Under the chunk lock, once its object is stored: the chunk is ready.
-- KEYS[1] chunk hash, KEYS[2] pending zset, KEYS[3] failed zset
-- ARGV[1] fingerprint, ARGV[2] object bytes, ARGV[3] bytes written, ARGV[4] now (ISO), ARGV[5] chunk key
if not redis.call('HGET', KEYS[1], 'state') then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ready', 'fp', ARGV[1], 'bytes', ARGV[2], 'written', ARGV[3],
  'updatedAt', ARGV[4])
redis.call('HDEL', KEYS[1], 'error')
redis.call('ZREM', KEYS[2], ARGV[5])
redis.call('ZREM', KEYS[3], ARGV[5])
return 1
