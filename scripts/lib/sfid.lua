-- lib.sfid: Salesforce record ids. A 15-character id is case-sensitive; its
-- 18-character form appends 3 characters that encode the case of the first 15,
-- so it survives case-folding (schema names are lower-cased: docs/external-apis.md §1.9).
local _M = {}

local SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

local function suffix(id15)
  local out = {}
  for chunk = 0, 2 do
    local bits = 0
    for i = 0, 4 do
      local pos = chunk * 5 + i + 1
      if id15:sub(pos, pos):match("%u") then bits = bits | (1 << i) end
    end
    out[chunk + 1] = SUFFIX:sub(bits + 1, bits + 1)
  end
  return table.concat(out)
end

-- to18(id) -> the 18-character id | nil, err. A given 18-character id must carry
-- the right suffix (compared case-insensitively, as Salesforce does).
function _M.to18(id)
  if type(id) ~= "string" then return nil, "must be a string" end
  if not id:match("^%w+$") or (#id ~= 15 and #id ~= 18) then
    return nil, "must be a 15- or 18-character Salesforce id"
  end
  local want = suffix(id:sub(1, 15))
  if #id == 18 and id:sub(16):upper() ~= want then
    return nil, "has a wrong 18-character checksum"
  end
  return id:sub(1, 15) .. want
end

-- file_names(id18) -> { id18, id15 }: the names a per-org file may carry (a
-- person copying an id from Salesforce's setup page gets the 15-character one)
function _M.file_names(id18)
  return { id18, id18:sub(1, 15) }
end

-- org_id(id) -> the 18-character organization id | nil, err (prefix 00D)
function _M.org_id(id)
  local full, err = _M.to18(id)
  if not full then return nil, err end
  if full:sub(1, 3) ~= "00D" then return nil, "is not an organization id (00D...)" end
  return full
end

return _M
