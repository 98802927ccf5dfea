-- After deleting the object: forget the chunk, unless an ingest took it up again meanwhile.
-- KEYS[1] refs set, KEYS[2] chunk hash, KEYS[3] gc set, KEYS[4] pending zset, KEYS[5] failed zset
-- ARGV[1] chunk key. Returns 1 when the chunk is gone.
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  return 1
end
return 0
