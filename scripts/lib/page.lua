-- lib.page: the few HTML pages a person's browser sees (the OAuth hops). Every
-- value is escaped; a page is a title and a sentence.
local _M = {}

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

function _M.escape(s) return (tostring(s):gsub("[&<>\"']", ESCAPES)) end

-- page.render(status, title, text) -> status, html, headers
function _M.render(status, title, text)
  return status, table.concat({
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>', _M.escape(title),
    '</title></head><body><h1>', _M.escape(title), '</h1><p>', _M.escape(text), '</p></body></html>' }),
    { ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store",
      ["X-Frame-Options"] = "DENY", ["Referrer-Policy"] = "no-referrer" }
end

return _M
