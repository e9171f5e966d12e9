-- fuzz target: mapping validation (onboarding.mapping): a document that
-- validates is prepared and encoded; one that does not says why, with at most
-- MAX_PROBLEMS problems listed.
local json = require "mc.json"
local mapping = require "onboarding.mapping"

return function(data)
  local doc = json.decode(data)
  if doc == nil then return end
  local ok, err, problems = mapping.validate(doc)
  if not ok then
    assert(type(err) == "string", "a refusal without a message")
    if problems then assert(#problems <= mapping.MAX_PROBLEMS + 1) end
    return
  end
  local text = assert(mapping.encode(mapping.prepare(doc)))
  assert(mapping.validate(assert(json.decode(text))), "a prepared mapping no longer validates: " .. text)
end
