// Making untrusted text safe for a terminal or a log file.
#pragma once

#include <string>
#include <string_view>

namespace ds {

// `s` with every control character written out, so that names, host names and log messages from
// anywhere cannot move the cursor, retitle a window, clear a screen or forge a log line:
// C0 controls (U+0000..U+001F, newline and tab included), DEL and any byte that is not part of
// well-formed UTF-8 become `\xHH`; C1 controls (U+0080..U+009F, CSI among them) become `\u00HH`.
// Everything else, other UTF-8 and the backslash included, is kept as it is. Idempotent.
std::string EscapeForTerminal(std::string_view s);

// True when EscapeForTerminal(s) would change `s`.
bool NeedsTerminalEscape(std::string_view s);

}  // namespace ds
