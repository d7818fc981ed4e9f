-- Restore a shard from the durable ledger after Redis lost its data.
-- Runs once: the first replica to call it restores, the others see ALREADY.
--
-- KEYS[1]  the due index (BASE .. "due")
-- KEYS[2]  the marker (BASE .. "hydrated")
-- ARGV     base, marker value, stock JSON {{sku, available, held, sold}, ...},
--          pending records JSON {record, ...} (the shape reserve.lua writes, and
--          `due`: the score in the due index, when not the deadline),
--          idempotency JSON {{key, "<fingerprint>|<id>", ttl ms left}, ...} (without
--          the third element, a key lives the whole idempotency ttl),
--          idempotency ttl ms
-- Returns  "RESTORED" or "ALREADY"

local base = ARGV[1]
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'ALREADY'
end
for _, s in ipairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', stock_key(base, s[1]), 'available', s[2], 'held', s[3], 'sold', s[4])
end
for _, rec in ipairs(cjson.decode(ARGV[4])) do
  local due = rec.due or rec.expires
  rec.due = nil
  redis.call('SET', res_key(base, rec.id), cjson.encode(rec))
  redis.call('ZADD', KEYS[1], due, rec.id)
end
for _, idem in ipairs(cjson.decode(ARGV[5])) do
  redis.call('SET', idem[1], idem[2], 'PX', tonumber(idem[3] or ARGV[6]))
end
redis.call('SET', KEYS[2], ARGV[2])
return 'RESTORED'
