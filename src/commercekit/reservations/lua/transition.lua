-- Confirm, release or extend one pending reservation; or settle a part.
--
-- KEYS[1]  the due index (BASE .. "due")
-- KEYS[2]  the record (BASE .. "res:" .. id)
-- ARGV     base, id, action, ttl_ms, retention_ms, status, idempotency key name
--          action "confirm" | "release" | "extend" (by ttl_ms): a reservation;
--          action "settle": a part (see reserve.lua) follows its parent into
--            `status`, whatever its deadline; "reschedule": a part's cleanup
--            time becomes ttl_ms (absolute, ms). Parts refuse other actions.
--          action "complete": every part of this parent is held; it may be
--            confirmed from now on (before, confirm answers INCOMPLETE);
--            ARGV[8], when not empty, is the whole cart's allocations (JSON).
--          action "abort": undo a part, or a parent still incomplete, as if it
--            had never been made: units back, record, due entry and
--            idempotency key (if it names this id) deleted.
-- Returns  JSON {ok = action, reservation = record}
--          or {err = "NOT_FOUND"}
--          or {err = "INVALID_TRANSITION", reservation = record}  (already terminal)
--          or {err = "EXPIRED", reservation = record}: the deadline had passed, so
--             this call expired the hold (and returned its stock) instead.
--          or {err = "RECORD_VERSION", id, v = version, max = version}: a newer
--             release wrote the record (see RECORD_VERSION); nothing changed.

local base, id, action = ARGV[1], ARGV[2], ARGV[3]
local ttl, retention, status = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
if not ready(base) then
  return redis.error_reply(NOT_READY)
end

local rec, newer = load_record(KEYS[2])
if newer then
  return newer_record(id, newer)
elseif not rec then
  return cjson.encode({err = 'NOT_FOUND'})
end
if rec.status ~= 'PENDING' then
  return cjson.encode({err = 'INVALID_TRANSITION', reservation = rec})
end
local part_action = action == 'settle' or action == 'reschedule'
if action ~= 'abort' and (rec.parent ~= nil) ~= part_action then
  return cjson.encode({err = 'NOT_FOUND'})  -- parts are internal; reservations are not parts
end
if action == 'abort' then
  if not (rec.parent or rec.incomplete) then
    return cjson.encode({err = 'INVALID_TRANSITION', reservation = rec})
  end
  for _, h in ipairs(holdings(rec)) do
    move(base, h[1], h[2], h[3], 'held', 'available')
  end
  forget_usage(base, rec)
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], id)
  local idem = ARGV[7]
  if idem and idem ~= '' then
    local seen = redis.call('GET', idem)
    if seen and string.sub(seen, -(#id + 1)) == '|' .. id then
      redis.call('DEL', idem)
    end
  end
  return cjson.encode({ok = action, reservation = rec})
elseif action == 'complete' then
  rec.incomplete = nil
  if ARGV[8] and ARGV[8] ~= '' then
    rec.cart_alloc = cjson.decode(ARGV[8])
  end
  save_record(base, rec)
  return cjson.encode({ok = action, reservation = rec})
elseif action == 'confirm' and rec.incomplete then
  return cjson.encode({err = 'INCOMPLETE', reservation = rec})
end
if action == 'settle' then
  settle(base, KEYS[1], rec, status, now_ms(), retention)
  return cjson.encode({ok = action, reservation = rec})
elseif action == 'reschedule' then
  redis.call('ZADD', KEYS[1], ttl, id)
  return cjson.encode({ok = action, reservation = rec})
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
  save_record(base, rec)
  redis.call('ZADD', KEYS[1], rec.expires, id)
else
  return redis.error_reply('unknown action ' .. tostring(action))
end
return cjson.encode({ok = action, reservation = rec})
