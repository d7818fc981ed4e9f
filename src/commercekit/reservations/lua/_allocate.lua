-- Allocating units to locations, shared by reserve.lua and amend.lua (the loader
-- puts this file after _lib.lua and before the script).
--
-- A spec is {locs = {{location, safety stock}, ...} in priority order, most = true
-- to take from the location with the most units first, split = "lines" | "none" |
-- "shipment"} (see reserve.lua).

-- The units one may take of a SKU at a location with `available` units, a
-- backorder cap `cap` and a safety stock `safety` (kept above the backorder floor).
local function sellable_of(available, cap, safety)
  return math.max(0, available + cap - (tonumber(safety) or 0))
end

-- The units of each line one may take at each of the spec's locations:
-- sellable[i][j] (see sellable_of), and there[i][j] the units available there.
local function sellable_units(base, lines, locs)
  local sellable, there = {}, {}
  for i, line in ipairs(lines) do
    local key = stock_key(base, line[1])
    local fields = {}
    for j, loc in ipairs(locs) do
      fields[2 * j - 1] = field('available', loc[1])
      fields[2 * j] = field('backorder', loc[1])
    end
    local values = redis.call('HMGET', key, unpack(fields))
    local row, here = {}, {}
    for j, loc in ipairs(locs) do
      here[j] = tonumber(values[2 * j - 1] or '0')
      row[j] = sellable_of(here[j], tonumber(values[2 * j] or '0'), loc[2])
    end
    sellable[i], there[i] = row, here
  end
  return sellable, there
end

-- The locations' indices in the order to take from: the spec's order, or by
-- `weight` (most first; ties keep the spec's order).
local function order_by(count, weight)
  local order = {}
  for j = 1, count do
    order[j] = j
  end
  if weight then
    table.sort(order, function(a, b)
      if weight[a] ~= weight[b] then
        return weight[a] > weight[b]
      end
      return a < b
    end)
  end
  return order
end

-- The units of `sku` one may take at location `loc` ({name, safety stock}), and
-- the units available there.
local function sellable_at(base, sku, loc)
  local v = redis.call('HMGET', stock_key(base, sku), field('available', loc[1]),
    field('backorder', loc[1]))
  local available = tonumber(v[1] or '0')
  return sellable_of(available, tonumber(v[2] or '0'), loc[2]), available
end

-- A line by priority, reading one location at a time until the line is whole
-- (the first location usually has enough): alloc entries, or nil and what
-- the rule could have given it (the total with splits, else the most at one place).
local function take_in_order(base, sku, wanted, locs, split)
  local alloc, left, total, most = {}, wanted, 0, 0
  for _, loc in ipairs(locs) do
    local here, available = sellable_at(base, sku, loc)
    if split == 'none' then
      if here >= wanted then
        return {entry(sku, loc[1], wanted, available)}
      end
      most = math.max(most, here)
    else
      local take = math.min(left, here)
      if take > 0 then
        alloc[#alloc + 1] = entry(sku, loc[1], take, available)
        left = left - take
      end
      total = total + here
      if left == 0 then
        return alloc
      end
    end
  end
  return nil, split == 'none' and most or total
end

-- Allocate every line to locations, or say which lines cannot be held.
-- Returns alloc {{sku, location, qty}, ...} and short {{sku, wanted, available}, ...}
-- where `available` is what the rule could have given the line.
local function allocate(base, lines, spec)
  local locs = spec.locs
  local alloc, short = {}, {}
  if not spec.most and spec.split ~= 'shipment' then
    for _, line in ipairs(lines) do
      local taken, could = take_in_order(base, line[1], line[2], locs, spec.split)
      if taken then
        for _, a in ipairs(taken) do
          alloc[#alloc + 1] = a
        end
      else
        short[#short + 1] = {line[1], line[2], could}
      end
    end
    if #short > 0 then
      return nil, short
    end
    return alloc, short
  end
  local sellable, there = sellable_units(base, lines, locs)
  if spec.split == 'shipment' then
    local weight = nil
    if spec.most then  -- the location able to give the most of this cart
      weight = {}
      for j = 1, #locs do
        weight[j] = 0
        for i, line in ipairs(lines) do
          weight[j] = weight[j] + math.min(sellable[i][j], line[2])
        end
      end
    end
    local best, best_fits, best_gives = nil, -1, -1
    for _, j in ipairs(order_by(#locs, weight)) do
      local fits, gives = 0, 0
      for i, line in ipairs(lines) do
        if sellable[i][j] >= line[2] then
          fits = fits + 1
        end
        gives = gives + math.min(sellable[i][j], line[2])
      end
      if fits == #lines then
        for i, line in ipairs(lines) do
          alloc[#alloc + 1] = entry(line[1], locs[j][1], line[2], there[i][j])
        end
        return alloc, short
      end
      if fits > best_fits or (fits == best_fits and gives > best_gives) then
        best, best_fits, best_gives = j, fits, gives
      end
    end
    -- short at the location that comes closest: the most lines whole, then the most units
    for i, line in ipairs(lines) do
      local there = best and sellable[i][best] or 0
      if there < line[2] then
        short[#short + 1] = {line[1], line[2], there}
      end
    end
    return nil, short
  end
  for i, line in ipairs(lines) do
    local sku, wanted = line[1], line[2]
    local order = order_by(#locs, sellable[i])  -- most stock first: the rest returned early
    if spec.split == 'none' then
      local chosen = nil
      for _, j in ipairs(order) do
        if sellable[i][j] >= wanted then
          chosen = j
          break
        end
      end
      if chosen then
        alloc[#alloc + 1] = entry(sku, locs[chosen][1], wanted, there[i][chosen])
      else
        local most = 0
        for j = 1, #locs do
          most = math.max(most, sellable[i][j])
        end
        short[#short + 1] = {sku, wanted, most}
      end
    else
      local left, total = wanted, 0
      for j = 1, #locs do
        total = total + sellable[i][j]
      end
      if total < wanted then
        short[#short + 1] = {sku, wanted, total}
      else
        for _, j in ipairs(order) do
          local take = math.min(left, sellable[i][j])
          if take > 0 then
            alloc[#alloc + 1] = entry(sku, locs[j][1], take, there[i][j])
            left = left - take
          end
          if left == 0 then
            break
          end
        end
      end
    end
  end
  if #short > 0 then
    return nil, short
  end
  return alloc, short
end
