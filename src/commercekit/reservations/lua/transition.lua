-- Confirm, release or extend one pending reservation.
--
-- KEYS[1]  the due index (BASE .. "due")
-- KEYS[2]  the record (BASE .. "res:" .. id)
-- ARGV     base, id, action ("confirm" | "release" | "extend"), ttl_ms (extend),
--          retention_ms
-- Returns  JSON {ok = action, reservation = record}
--          or {err = "NOT_FOUND"}
--          or {err = "INVALID_TRANSITION", reservation = record}  (already terminal)
--          or {err = "EXPIRED", reservation = record}: the deadline had passed, so
--             this call expired the hold (and returned its stock) instead.

local base, id, action = ARGV[1], ARGV[2], ARGV[3]
local ttl, retention = tonumber(ARGV[4]), tonumber(ARGV[5])
if not ready(base) then
  return redis.error_reply(NOT_READY)
end

local raw = redis.call('GET', KEYS[2])
if not raw then
  return cjson.encode({err = 'NOT_FOUND'})
end
local rec = cjson.decode(raw)
if rec.status ~= 'PENDING' then
  return cjson.encode({err = 'INVALID_TRANSITION', reservation = rec})
end

local now = now_ms()
if now >= rec.expires then
  settle(base, KEYS[1], rec, 'EXPIRED', now, retention)
  return cjson.encode({err = 'EXPIRED', reservation = rec})
end

if action == 'confirm' then
  settle(base, KEYS[1], rec, 'CONFIRMED', now, retention)
elseif action == 'release' then
  settle(base, KEYS[1], rec, 'RELEASED', now, retention)
elseif action == 'extend' then
  rec.expires = now + ttl
  rec.updated = now
  redis.call('SET', KEYS[2], cjson.encode(rec))
  redis.call('ZADD', KEYS[1], rec.expires, id)
else
  return redis.error_reply('unknown action ' .. tostring(action))
end
return cjson.encode({ok = action, reservation = rec})
