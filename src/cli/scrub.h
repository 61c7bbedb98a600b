// `datasync scrub`: starts storage scrubs and shows their findings over the admin API
// (contract: the scrub endpoints under /api/v1/admin, docs/api.md).
//   datasync scrub RUNNER JOB [--rehash F] [--wait] [--json]
//   datasync scrub --all [--rehash F] [--wait] [--json]
//   datasync scrub status [RUNNER [JOB]] [--json]
// With --wait the exit status is 0 when every scrub succeeded and healed what it found, 1 when one
// failed, 3 when one found drift it could not heal (the message names the count).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/cli_support.h"

namespace CLI {
class App;
}

namespace ds::cli {

// --rehash as typed: nullopt when empty (the server's default applies).
// Throws CliError (exit 2) unless `text` is a number from 0 to 1.
std::optional<double> ParseRehashFraction(const std::string& text);

// How `scrub --wait` ends after the finished scrub objects `done`: nullopt (exit 0) when every one
// succeeded and left nothing unhealed, even if it healed drift; exit 1 when one failed; exit 3,
// with the count in the message, when findings were left unhealed.
std::optional<CliError> WaitVerdict(const nlohmann::json& done);

class ScrubCommands {
 public:
  // Registers `scrub` and `scrub status` on `app`; the parsed command is stored into `action`.
  // REQUIRES: `g` and `action` outlive this object, and this object outlives app.parse() and
  // every call of `action` (CLI11 keeps pointers to the members).
  ScrubCommands(CLI::App& app, Globals& g, std::function<void()>& action);
  ScrubCommands(const ScrubCommands&) = delete;
  ScrubCommands& operator=(const ScrubCommands&) = delete;

 private:
  void Start();   // scrub RUNNER JOB | scrub --all
  void Status();  // scrub status
  // Polls GET /scrubs/{id} until the scrub is no longer queued or running (progress on a tty).
  nlohmann::json WaitFor(Api& api, const std::string& id);

  Globals& g_;
  std::string runner_;
  std::string job_;
  std::string rehash_;  // as typed: validated (0..1) by Start()
  bool all_ = false;
  bool wait_ = false;
};

}  // namespace ds::cli
