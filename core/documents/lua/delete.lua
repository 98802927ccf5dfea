-- Remove a document and release its chunk references.
-- KEYS[1] doc hash, KEYS[2] gc set, KEYS[3] document list (sorted set), KEYS[4] corpus change log (stream)
-- ARGV[1] key prefix, ARGV[2] document name, ARGV[3] its list key (<tenant>/<id>), ARGV[4] change log
-- length kept
-- Returns the JSON list of chunks left unreferenced, or false when the document does not exist.
--- @include release-ref
local p = ARGV[1]
local name = ARGV[2]
local chunks = redis.call('HGET', KEYS[1], 'chunks')
if not chunks then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'op', 'delete', 'doc', name)
local orphans = {}
local seen = {}
for _, k in ipairs(cjson.decode(chunks)) do
  if not seen[k] then
    seen[k] = true
    release(p, name, k, KEYS[2], orphans)
  end
end
return cjson.encode(orphans)
