// Sending one alert transition to one notification channel: webhook (JSON POST; payload format
// "json", or "slack"/"teams" for their incoming-webhook {"text": ...} shape) or e-mail (SMTP via
// libcurl). Channel configs may hold secrets (SMTP password, webhook tokens in the URL): they are
// never logged, and errors never repeat them.
#pragma once

#include <string>

#include "common/status.h"
#include "http/address_policy.h"
#include "index/state_index.h"

namespace ds {

// Checks a channel definition from the API: kind, name, and its config:
//   webhook: {"url": "http(s)://...", "format": "json"|"slack"|"teams"}
//   email:   {"smtp_url": "smtp(s)://host:port", "from": "a@b", "to": ["c@d", ...],
//             "username": "...", "password": "...", "starttls": true}
// A webhook's host is resolved and every address it resolves to must be one `webhook_targets`
// allows (docs/security.md, "Webhook targets"). InvalidArgument otherwise.
absl::Status ValidateChannel(const NotificationChannel& channel,
                             const http::AddressPolicy& webhook_targets);

// The channel's config with secrets replaced by "****", for listings.
std::string RedactedChannelConfig(const NotificationChannel& channel);

// One human line: "[FIRED warning] runner-offline pc1: pc1 has not sent a heartbeat for 16m".
std::string NotificationText(const Alert& alert, const std::string& transition);

// Sends it; a webhook connects only to addresses `webhook_targets` allows (checked again for
// every address connected to). OK only when the receiver accepted it (2xx / SMTP 250). Every
// failure is the same Unavailable("webhook delivery failed" / "e-mail delivery failed"), whatever
// went wrong (refused address, connection refused, timeout, TLS, an HTTP status), so that the
// result says nothing about the target's network (no port oracle); the detail goes to the server
// log only, URLs redacted.
[[nodiscard]] absl::Status SendNotification(const NotificationChannel& channel, const Alert& alert,
                                            const std::string& transition,
                                            const http::AddressPolicy& webhook_targets);

}  // namespace ds
