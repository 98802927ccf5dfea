-- Mark a chunk failed unless it became ready meanwhile. KEYS[1] chunk hash; ARGV[1] error, ARGV[2] now
if redis.call('HGET', KEYS[1], 'state') == 'ready' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[1], 'updatedAt', ARGV[2])
return 1
