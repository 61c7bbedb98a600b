#include "server/notify.h"

#include <curl/curl.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/time_util.h"
#include "http/http_client.h"
#include "server/alerts.h"
#include "server/redact.h"

namespace ds {
namespace {

using nlohmann::json;

absl::StatusOr<json> ConfigOf(const NotificationChannel& c) {
  json j = ParseJsonOr(c.config_json);
  if (!j.is_object()) return absl::InvalidArgumentError("channel config must be a JSON object");
  return j;
}

bool IsHttpUrl(const std::string& u) {
  return u.rfind("http://", 0) == 0 || u.rfind("https://", 0) == 0;
}

bool LooksLikeAddress(const std::string& a) {
  return a.size() <= 254 && a.find('@') != std::string::npos &&
         a.find_first_of("<>\r\n ,;") == std::string::npos;
}

// The detailed outcome, for the server log (SendNotification makes it uniform).
absl::Status SendWebhook(const json& cfg, const Alert& alert, const std::string& transition,
                         const http::AddressPolicy& targets) {
  const std::string url = cfg.value("url", "");
  const std::string format = cfg.value("format", "json");
  json body;
  if (format == "slack" || format == "teams") {
    body = json{{"text", NotificationText(alert, transition)}};
  } else {
    body = json{{"transition", transition},
                {"text", NotificationText(alert, transition)},
                {"alert", ParseJsonOr(AlertJsonText(alert))}};
  }
  http::ClientOptions opts;
  opts.timeout = std::chrono::milliseconds(15'000);
  opts.connect_timeout = std::chrono::milliseconds(5'000);
  opts.address_policy = targets;
  http::Client client(url, opts);
  auto resp = client.Do("POST", "", body.dump(-1, ' ', false, json::error_handler_t::replace),
                        {{"Content-Type", "application/json"}});
  if (!resp.ok()) return resp.status();
  if (resp->status < 200 || resp->status >= 300) {
    return absl::UnavailableError(absl::StrCat("webhook answered HTTP ", resp->status));
  }
  return absl::OkStatus();
}

struct MailBody {
  std::string text;
  size_t at = 0;
};

size_t ReadMail(char* out, size_t size, size_t n, void* user) {
  auto* body = static_cast<MailBody*>(user);
  size_t left = body->text.size() - body->at;
  size_t take = std::min(left, size * n);
  std::memcpy(out, body->text.data() + body->at, take);
  body->at += take;
  return take;
}

absl::Status SendEmail(const json& cfg, const Alert& alert, const std::string& transition) {
  const std::string smtp_url = cfg.value("smtp_url", "");
  const std::string from = cfg.value("from", "");
  std::vector<std::string> to;
  if (cfg.contains("to") && cfg["to"].is_array()) {
    for (const auto& t : cfg["to"]) {
      if (t.is_string()) to.push_back(t.get<std::string>());
    }
  } else if (cfg.contains("to") && cfg["to"].is_string()) {
    to.push_back(cfg["to"].get<std::string>());
  }
  const std::string subject = NotificationText(alert, transition);
  std::string text = absl::StrCat("Date: ", FormatIsoUtc(SystemClock()->NowUnixMs()), "\r\n",
                                  "From: ", from, "\r\n", "To: ");
  for (size_t i = 0; i < to.size(); ++i) absl::StrAppend(&text, i ? ", " : "", to[i]);
  std::string safe_subject = subject;
  for (char& c : safe_subject) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  absl::StrAppend(
      &text, "\r\nSubject: DataSync: ", safe_subject, "\r\n", "Message-ID: <", NewUuid(),
      "@datasync>\r\n", "Content-Type: text/plain; charset=utf-8\r\n\r\n", subject, "\r\n\r\n",
      ParseJsonOr(AlertJsonText(alert)).dump(2, ' ', false, json::error_handler_t::replace),
      "\r\n");
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  MailBody body{text, 0};
  curl_slist* rcpt = nullptr;
  for (const auto& t : to) rcpt = curl_slist_append(rcpt, ("<" + t + ">").c_str());
  curl_easy_setopt(curl, CURLOPT_URL, smtp_url.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, ("<" + from + ">").c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadMail);
  curl_easy_setopt(curl, CURLOPT_READDATA, &body);
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  const std::string user = cfg.value("username", ""), password = cfg.value("password", "");
  if (!user.empty()) {
    curl_easy_setopt(curl, CURLOPT_USERNAME, user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, password.c_str());
  }
  if (cfg.value("starttls", false))
    curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("SMTP failed: ", curl_easy_strerror(rc),
                                               code ? absl::StrCat(" (", code, ")") : ""));
  }
  return absl::OkStatus();
}

// The host of an http(s) URL as libcurl, which connects to it, parses it.
absl::StatusOr<std::string> UrlHost(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  char* host = nullptr;
  if (u == nullptr || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK ||
      curl_url_get(u.get(), CURLUPART_HOST, &host, 0) != CURLUE_OK) {
    return absl::InvalidArgumentError("config.url is not a valid URL");
  }
  std::string out = host;
  curl_free(host);
  return out;
}

absl::Status ValidateWebhook(const json& cfg, const http::AddressPolicy& targets) {
  if (!cfg.contains("url") || !cfg["url"].is_string() ||
      !IsHttpUrl(cfg["url"].get<std::string>())) {
    return absl::InvalidArgumentError("a webhook channel needs config.url (http:// or https://)");
  }
  std::string format = cfg.value("format", "json");
  if (format != "json" && format != "slack" && format != "teams") {
    return absl::InvalidArgumentError("webhook format must be json, slack or teams");
  }
  const std::string url = cfg["url"].get<std::string>();
  DS_ASSIGN_OR_RETURN(std::string host, UrlHost(url));
  absl::Status st = targets.CheckHost(host);
  if (st.ok()) return st;
  return absl::InvalidArgumentError(absl::StrCat(
      "webhook target ", RedactUrl(url), ": ", st.message(),
      absl::IsPermissionDenied(st)
          ? " (private addresses need --allow-private-webhooks, loopback ones "
            "--allow-loopback-webhooks; link-local, cloud metadata, unspecified, multicast and "
            "reserved ones are never allowed)"
          : ""));
}

}  // namespace

absl::Status ValidateChannel(const NotificationChannel& c,
                             const http::AddressPolicy& webhook_targets) {
  if (c.kind != "webhook" && c.kind != "email") {
    return absl::InvalidArgumentError("channel kind must be webhook or email");
  }
  if (c.min_severity != "info" && c.min_severity != "warning" && c.min_severity != "critical") {
    return absl::InvalidArgumentError("min_severity must be info, warning or critical");
  }
  if (c.config_json.size() > 16 * 1024)
    return absl::InvalidArgumentError("channel config too large");
  DS_ASSIGN_OR_RETURN(json cfg, ConfigOf(c));
  if (c.kind == "webhook") return ValidateWebhook(cfg, webhook_targets);
  std::string url = cfg.value("smtp_url", "");
  if (url.rfind("smtp://", 0) != 0 && url.rfind("smtps://", 0) != 0) {
    return absl::InvalidArgumentError(
        "an email channel needs config.smtp_url (smtp:// or smtps://)");
  }
  if (!LooksLikeAddress(cfg.value("from", "")))
    return absl::InvalidArgumentError("config.from must be an address");
  bool any = false;
  if (cfg.contains("to") && cfg["to"].is_array()) {
    for (const auto& t : cfg["to"]) {
      if (!t.is_string() || !LooksLikeAddress(t.get<std::string>())) {
        return absl::InvalidArgumentError("config.to must list addresses");
      }
      any = true;
    }
  } else if (cfg.contains("to") && cfg["to"].is_string()) {
    if (!LooksLikeAddress(cfg["to"].get<std::string>()))
      return absl::InvalidArgumentError("config.to must be an address");
    any = true;
  }
  if (!any) return absl::InvalidArgumentError("an email channel needs config.to");
  return absl::OkStatus();
}

std::string RedactedChannelConfig(const NotificationChannel& c) {
  json cfg = ParseJsonOr(c.config_json);
  if (!cfg.is_object()) return "{}";
  return RedactSecrets(std::move(cfg)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string NotificationText(const Alert& a, const std::string& transition) {
  std::string state = transition == "resolved" ? "RESOLVED" : "FIRED";
  return absl::StrCat("[", state, " ", a.severity, "] ", a.rule_name, " ", a.subject, ": ",
                      a.message);
}

absl::Status SendNotification(const NotificationChannel& channel, const Alert& alert,
                              const std::string& transition,
                              const http::AddressPolicy& webhook_targets) {
  absl::Status st = absl::InvalidArgumentError(absl::StrCat("unknown channel kind ", channel.kind));
  if (auto cfg = ConfigOf(channel); !cfg.ok()) {
    st = cfg.status();
  } else if (channel.kind == "webhook") {
    st = SendWebhook(*cfg, alert, transition, webhook_targets);
  } else if (channel.kind == "email") {
    st = SendEmail(*cfg, alert, transition);
  }
  if (st.ok()) return st;
  spdlog::warn("notify: channel {} ({}) not delivered: {}", channel.name, channel.kind,
               RedactUrlsIn(st.ToString()));
  return absl::UnavailableError(channel.kind == "email" ? "e-mail delivery failed"
                                                        : "webhook delivery failed");
}

}  // namespace ds
