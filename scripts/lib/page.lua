-- lib.page: the few HTML pages a person's browser sees (the OAuth hops). Every
-- value is escaped; a page is a title and a sentence.
local escape = require("mc.template").escape

local _M = {}

-- page.render(status, title, text) -> status, html, headers
function _M.render(status, title, text)
  return status, table.concat({
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>', escape(title),
    '</title></head><body><h1>', escape(title), '</h1><p>', escape(text), '</p></body></html>' }),
    { ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store",
      ["X-Frame-Options"] = "DENY", ["Referrer-Policy"] = "no-referrer" }
end

return _M
