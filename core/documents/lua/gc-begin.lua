-- Under the chunk lock, before deleting the object: still unreferenced? Then mark the chunk as being
-- deleted and return the model fingerprint its object is stored under; false when referenced again.
-- KEYS[1] refs set, KEYS[2] chunk hash, KEYS[3] gc set; ARGV[1] chunk key
if redis.call('SCARD', KEYS[1]) > 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return false
end
local fp = redis.call('HGET', KEYS[2], 'fp')
redis.call('HSET', KEYS[2], 'state', 'deleting')
return fp or ''
