-- Amend a PENDING reservation in place: its cart becomes the new one, keeping the units
-- it holds already. Only what changes moves: a SKU with fewer units gives the
-- difference back (where it came from, the units taken last first), a SKU with more
-- takes the difference (by the allocation spec), a SKU gone gives all back. All of it
-- or nothing: every check comes before the first write.
--
-- KEYS[1]  the due index (BASE .. "due")
-- KEYS[2]  the record (BASE .. "res:" .. id)
-- KEYS[3]  the amendment's idempotency key (BASE .. "amend:..."), or KEYS[2] when none
-- ARGV     base, id, spec JSON ("" = the default location), the kits' generation, the
--          new cart as asked JSON ({{sku, qty}, ...}), fingerprint of it, has key
--          ("1"/"0"), key ttl ms, retention ms, then sku, qty pairs: the units the new
--          cart holds (SKUs unique, quantities positive).
-- Returns  JSON {ok = "AMENDED" | "REPLAYED", reservation = record}
--          or {err = "NOT_FOUND"} / {err = "SPREAD"} (a cart over several shards)
--          or {err = "INVALID_TRANSITION", reservation} / {err = "EXPIRED", reservation}
--             (the deadline had passed: this call expired it)
--          or {err = "OUT_OF_STOCK", short} / {err = "PURCHASE_LIMIT", over} (see reserve.lua)
--          or {err = "IDEMPOTENCY_CONFLICT", id} / {err = "KITS_CHANGED", gen}
--          or {err = "RECORD_VERSION", id, v, max}

local base, id, spec = ARGV[1], ARGV[2], ARGV[3]
local kitgen, shown, fp = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local has_key, key_ttl, retention = ARGV[7] == '1', tonumber(ARGV[8]), tonumber(ARGV[9])
local first = 10
if not ready(base) then
  return redis.error_reply(NOT_READY)
end

local rec, newer = load_record(KEYS[2])
if newer then
  return newer_record(id, newer)
elseif not rec or rec.parent then
  return cjson.encode({err = 'NOT_FOUND'})
end
if has_key then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    if seen ~= fp .. '|' .. id then
      return cjson.encode({err = 'IDEMPOTENCY_CONFLICT', id = id})
    end
    return cjson.encode({ok = 'REPLAYED', reservation = rec})
  end
end
if rec.status ~= 'PENDING' then
  return cjson.encode({err = 'INVALID_TRANSITION', reservation = rec})
end
if rec.parts or rec.incomplete then
  return cjson.encode({err = 'SPREAD'})
end
local now = now_ms()
if now >= rec.expires then
  settle(base, KEYS[1], rec, 'EXPIRED', now, retention)
  return cjson.encode({err = 'EXPIRED', reservation = rec})
end
local gen = tonumber(redis.call('GET', base .. 'kitgen') or '0')
if gen > kitgen then
  return cjson.encode({err = 'KITS_CHANGED', gen = gen})
end

-- What the hold has now, per SKU, and what the new cart needs.
local entries = {}
for _, h in ipairs(holdings(rec)) do
  entries[#entries + 1] = {h[1], h[2], h[3], h[4]}
end
local had, order = {}, {}
for _, e in ipairs(entries) do
  if not had[e[1]] then
    order[#order + 1] = e[1]
  end
  had[e[1]] = (had[e[1]] or 0) + e[3]
end
local wanted, more = {}, {}
for i = first, #ARGV, 2 do
  local sku, qty = ARGV[i], tonumber(ARGV[i + 1])
  wanted[sku] = qty
  if qty > (had[sku] or 0) then
    more[#more + 1] = {sku, qty - (had[sku] or 0)}
  end
end

-- The extra units, allocated as a reserve would (nothing written yet).
local extra, short = {}, {}
if spec == '' then
  for _, line in ipairs(more) do
    local v = redis.call('HMGET', stock_key(base, line[1]), 'available', 'backorder')
    local available = tonumber(v[1] or '0')
    local sellable = sellable_of(available, tonumber(v[2] or '0'), 0)
    if sellable < line[2] then
      short[#short + 1] = {line[1], line[2], sellable}
    else
      extra[#extra + 1] = entry(line[1], DEFAULT_LOCATION, line[2], available)
    end
  end
elseif #more > 0 then
  extra, short = allocate(base, more, cjson.decode(spec))
end

-- Purchase limits: the owner's units within each window, this hold's counted anew.
local over, counted = {}, {}
for sku, qty in pairs(wanted) do
  local v = redis.call('HMGET', stock_key(base, sku), 'limit', 'limit_ms')
  local limit = tonumber(v[1] or '0')
  if limit > 0 then
    local key = usage_key(base, sku, rec.owner)
    local used = used_since(key, now - tonumber(v[2]))
    local mine = redis.call('HGET', key, id)
    if mine then
      used = used - tonumber(string.sub(mine, 1, string.find(mine, ':', 1, true) - 1))
    end
    if qty > (had[sku] or 0) and used + qty > limit then
      over[#over + 1] = {sku, limit, used, qty}
    end
    counted[#counted + 1] = {key, qty, tonumber(v[2])}
  end
end
if #over > 0 then
  return cjson.encode({err = 'PURCHASE_LIMIT', over = over})
end
if #short > 0 then
  for _, line in ipairs(short) do  -- in terms of the new cart: the units held count too
    line[2], line[3] = line[2] + (had[line[1]] or 0), line[3] + (had[line[1]] or 0)
  end
  return cjson.encode({err = 'OUT_OF_STOCK', short = short})
end

-- Give back what the new cart no longer needs, the units taken last first (owed ones
-- first within an entry: they were never there).
local moved = false
for i = #entries, 1, -1 do
  local e = entries[i]
  local give = math.min(e[3], (had[e[1]] or 0) - (wanted[e[1]] or 0))
  if give > 0 then
    moved = true
    move(base, e[1], e[2], give, 'held', 'available')
    had[e[1]] = had[e[1]] - give
    e[3] = e[3] - give
    if e[4] then
      e[4] = math.min(math.max(0, e[4] - give), e[3])
    end
  end
end
-- Take the extra units, merged into the entries at their locations.
for _, x in ipairs(extra) do
  moved = true
  move(base, x[1], x[2], x[3], 'available', 'held')
  local merged = false
  for _, e in ipairs(entries) do
    if e[1] == x[1] and e[2] == x[2] and e[3] > 0 then
      e[3] = e[3] + x[3]
      local owed = (e[4] or 0) + (x[4] or 0)
      e[4] = owed > 0 and owed or nil
      merged = true
      break
    end
  end
  if not merged then
    entries[#entries + 1] = {x[1], x[2], x[3], x[4]}
  end
end
for _, c in ipairs(counted) do
  redis.call('HSET', c[1], id, c[2] .. ':' .. rec.created)
  redis.call('PEXPIRE', c[1], c[3])
end
for _, sku in ipairs(order) do
  if not wanted[sku] then  -- gone from the cart: it no longer counts against a limit
    redis.call('HDEL', usage_key(base, sku, rec.owner), id)
  end
end

local alloc, plain = {}, shown == ''
for _, e in ipairs(entries) do
  if e[3] > 0 then
    alloc[#alloc + 1] = (e[4] and e[4] > 0) and {e[1], e[2], e[3], e[4]} or {e[1], e[2], e[3]}
    plain = plain and e[2] == DEFAULT_LOCATION and #alloc[#alloc] == 3
  end
end
local lines = {}
for i = first, #ARGV, 2 do
  lines[#lines + 1] = {ARGV[i], tonumber(ARGV[i + 1])}
end
if shown ~= '' then
  lines = cjson.decode(shown)
end
-- Every unit at the default location, none owed, no kit: the lines say it all.
local placed = (not plain) and alloc or nil
if moved or cjson.encode(lines) ~= cjson.encode(rec.lines)
    or cjson.encode(placed or {}) ~= cjson.encode(rec.alloc or {}) then
  rec.lines, rec.alloc, rec.updated = lines, placed, now
  save_record(base, rec)
end
if has_key then
  redis.call('SET', KEYS[3], fp .. '|' .. id, 'PX', key_ttl)
end
return cjson.encode({ok = 'AMENDED', reservation = rec})
