-- Change the stock of one SKU at one location.
--
-- KEYS[1]  the SKU's stock hash (BASE .. "stock:" .. sku)
-- ARGV     op ("set" | "restock" | "adjust" | "backorder" | "limit"), amount, base, location,
--          window ms ("limit")
--          set:       on-hand units (available + held) become `amount`
--          restock:   `amount` (> 0) more units become available
--          adjust:    available changes by `amount` (may be negative)
--          backorder: up to `amount` units may be held beyond stock (the cap)
--          limit:     an owner may hold or buy `amount` units within the window (0: no limit);
--                     a SKU's, whatever the location
--          Available units never go below -cap (0 without backorders).
-- Returns  JSON {available, held, sold, backorder}
--          or {err = "BELOW_HELD" | "NEGATIVE" | "BELOW_OWED", available, held, sold, backorder}

local op, amount, loc = ARGV[1], tonumber(ARGV[2]), ARGV[4]
if not ready(ARGV[3]) then
  return redis.error_reply(NOT_READY)
end
local available, held, sold, cap = unpack(stock_of(KEYS[1], loc))
local function refuse(err)
  return cjson.encode({err = err, available = available, held = held, sold = sold, backorder = cap})
end

local target = available
if op == 'set' then
  if amount - held < -cap then
    return refuse('BELOW_HELD')
  end
  target = amount - held
elseif op == 'restock' or op == 'adjust' then
  target = available + amount
  if target < -cap then
    return refuse('NEGATIVE')
  end
elseif op == 'limit' then
  if amount > 0 then
    redis.call('HSET', KEYS[1], 'limit', amount, 'limit_ms', tonumber(ARGV[5]))
  else
    redis.call('HDEL', KEYS[1], 'limit', 'limit_ms')
  end
elseif op == 'backorder' then
  if available < -amount then  -- more units are owed than the new cap allows
    return refuse('BELOW_OWED')
  end
  cap = amount
else
  return redis.error_reply('unknown stock operation ' .. tostring(op))
end

redis.call('HSET', KEYS[1], field('available', loc), target, field('held', loc), held,
  field('sold', loc), sold)
if cap > 0 then
  redis.call('HSET', KEYS[1], field('backorder', loc), cap)
else
  redis.call('HDEL', KEYS[1], field('backorder', loc))
end
return cjson.encode({available = target, held = held, sold = sold, backorder = cap})
