-- Store a document's chunk list and take references to its chunks; release the chunks it no longer uses.
-- KEYS[1] doc hash, KEYS[2] gc set, KEYS[3] document list (sorted set), KEYS[4] corpus change log (stream)
-- ARGV[1] key prefix, ARGV[2] document id, ARGV[3] now (ISO), ARGV[4] metadata JSON,
-- ARGV[5] chunk keys JSON (in order), ARGV[6] per chunk [token ids JSON, token count], ARGV[7] fingerprint,
-- ARGV[8] change log length kept
-- Returns {chunks to enqueue, chunks already ready, chunks left unreferenced}, each a JSON list.
--- @include release-ref
local p = ARGV[1]
local id = ARGV[2]
local now = ARGV[3]
local newKeys = cjson.decode(ARGV[5])
local toks = cjson.decode(ARGV[6])
local old = redis.call('HGET', KEYS[1], 'chunks')
local created = redis.call('HGET', KEYS[1], 'createdAt') or now
local enqueue = {}
local ready = {}
local seen = {}
for i, k in ipairs(newKeys) do
  redis.call('SADD', p .. 'refs:' .. k, id)
  if not seen[k] then
    seen[k] = true
    local ck = p .. 'chunk:' .. k
    local st = redis.call('HGET', ck, 'state')
    if st == 'ready' then
      table.insert(ready, k)
    else
      redis.call('HSET', ck, 'state', 'pending', 'tokens', toks[i][1], 'ntokens', toks[i][2], 'fp', ARGV[7], 'updatedAt', now)
      redis.call('HDEL', ck, 'error')
      table.insert(enqueue, k)
    end
  end
end
local orphans = {}
if old then
  for _, k in ipairs(cjson.decode(old)) do
    if not seen[k] then
      seen[k] = true
      release(p, id, k, KEYS[2], orphans)
    end
  end
end
redis.call('HSET', KEYS[1], 'id', id, 'chunks', ARGV[5], 'meta', ARGV[4], 'createdAt', created, 'updatedAt', now)
redis.call('ZADD', KEYS[3], 0, id)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'op', 'ingest', 'doc', id)
return {cjson.encode(enqueue), cjson.encode(ready), cjson.encode(orphans)}
