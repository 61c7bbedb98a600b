// Sending one alert transition to one notification channel: webhook (JSON POST; payload format
// "json", or "slack"/"teams" for their incoming-webhook {"text": ...} shape) or e-mail (SMTP via
// libcurl). Channel configs may hold secrets (SMTP password, webhook tokens in the URL): they are
// never logged, and errors never repeat them.
#pragma once

#include <string>

#include "common/status.h"
#include "index/state_index.h"

namespace ds {

// Checks a channel definition from the API: kind, name, and its config:
//   webhook: {"url": "http(s)://...", "format": "json"|"slack"|"teams"}
//   email:   {"smtp_url": "smtp(s)://host:port", "from": "a@b", "to": ["c@d", ...],
//             "username": "...", "password": "...", "starttls": true}
absl::Status ValidateChannel(const NotificationChannel& channel);

// The channel's config with secrets replaced by "****", for listings.
std::string RedactedChannelConfig(const NotificationChannel& channel);

// One human line: "[FIRED warning] runner-offline pc1: pc1 has not sent a heartbeat for 16m".
std::string NotificationText(const Alert& alert, const std::string& transition);

// Sends it. OK only when the receiver accepted it (2xx / SMTP 250). The error message is safe to
// store and show.
[[nodiscard]] absl::Status SendNotification(const NotificationChannel& channel, const Alert& alert,
                                            const std::string& transition);

}  // namespace ds
