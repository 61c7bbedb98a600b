#include "cli/scrub.h"


#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/escape.h"
#include "common/time_util.h"
#include "platform/system.h"

namespace ds::cli {
namespace {

using nlohmann::json;

// Report entries printed per list; --json shows all the server kept (it caps each list at 200).
constexpr int64_t kShownPerList = 20;

// `j[key]` as a count; 0 when absent or not a number.
int64_t Count(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}

// `j[key]` as a number; 0 when absent or not a number.
double Real(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string Text(const json& j, const char* key) { return Str(j, key); }  // escaped
std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

bool Finished(const std::string& state) {
  return !state.empty() && state != "queued" && state != "running";
}

std::string Elapsed(const json& s) {
  return FormatDuration(
      std::chrono::milliseconds(static_cast<int64_t>(Real(s, "elapsed_s") * 1000)));
}

// Prints up to kShownPerList entries of `list`, then how many more the scrub counted (`total`).
void PrintCapped(const char* what, const json& list, int64_t total,
                 const std::function<std::string(const json&)>& line) {
  int64_t shown = 0;
  if (list.is_array()) {
    for (const auto& e : list) {
      if (shown == kShownPerList) break;
      std::cout << "    " << what << ": " << line(e) << "\n";
      ++shown;
    }
  }
  int64_t listed = list.is_array() ? static_cast<int64_t>(list.size()) : 0;
  int64_t more = std::max(total, listed) - shown;
  if (more > 0)
    std::cout << "    ... and " << more << " more " << what << " (--json lists up to 200)\n";
}

void PrintFindings(const json& s) {
  const json& rep = s.contains("report") && s["report"].is_object() ? s["report"] : json::object();
  auto list = [&](const char* k) { return rep.value(k, json::array()); };
  PrintCapped("missing", list("missing"), Count(s, "missing"), [](const json& e) {
    return absl::StrCat(Text(e, "path"), " (", HumanBytes(Count(e, "size")), ") ",
                        Text(e, "action"));
  });
  PrintCapped("mismatch", list("mismatches"),
              Count(s, "size_mismatches") + Count(s, "hash_mismatches"), [](const json& e) {
                bool size = Str(e, "kind") == "size";
                return absl::StrCat(
                    Text(e, "path"), " (", Text(e, "kind"), ") index ",
                    size ? HumanBytes(Count(e, "index_size")) : Text(e, "index_sha256"),
                    ", stored ",
                    size ? HumanBytes(Count(e, "stored_size")) : OrDash(Text(e, "stored_sha256")),
                    " -> ", Text(e, "action"));
              });
  PrintCapped("unhealed", list("unhealed"), Count(s, "unhealed"),
              [](const json& e) { return absl::StrCat(Text(e, "path"), ": ", Text(e, "reason")); });
}

void PrintScrub(const json& s) {
  std::cout << "scrub " << Text(s, "id") << " of " << Text(s, "runner") << "/" << Text(s, "job")
            << ": " << Text(s, "state") << " (" << Text(s, "trigger") << ")\n"
            << "  storage: " << Count(s, "objects_listed") << " objects, "
            << HumanBytes(Count(s, "bytes_listed")) << " listed, " << Count(s, "objects_rehashed")
            << " re-hashed, in " << Elapsed(s) << "\n"
            << "  findings: " << Count(s, "missing") << " missing, " << Count(s, "extra")
            << " extra, " << Count(s, "size_mismatches") << " size and "
            << Count(s, "hash_mismatches") << " hash mismatches, " << Count(s, "temp_files")
            << " temp files; " << Count(s, "healed") << " healed, " << Count(s, "unhealed")
            << " unhealed\n";
  if (s.contains("drift") && s["drift"].is_boolean() && s["drift"].get<bool>()) {
    std::cout << "  DRIFT: storage and index differ"
              << (Count(s, "unhealed") > 0 ? "; not all of it was healed\n"
                                           : "; all of it was healed\n");
  }
  PrintFindings(s);
  if (!Str(s, "error").empty()) std::cout << "  error: " << Text(s, "error") << "\n";
}

std::vector<std::string> StatusRow(const json& j) {
  const json& last = j.contains("last") ? j["last"] : json();
  std::string n = "-";
  auto num = [&](int64_t v) { return last.is_object() ? std::to_string(v) : n; };
  return {Text(j, "runner"),
          Text(j, "job"),
          last.is_object() ? Text(last, "state") : "never",
          last.is_object() ? OrDash(Text(last, "finished_at")) : n,
          num(Count(last, "objects_listed")),
          num(Count(last, "missing")),
          num(Count(last, "extra")),
          num(Count(last, "size_mismatches") + Count(last, "hash_mismatches")),
          num(Count(last, "temp_files")),
          std::to_string(Count(j, "unhealed")),
          OrDash(Text(j, "next_due_at"))};
}

}  // namespace

std::optional<double> ParseRehashFraction(const std::string& text) {
  if (text.empty()) return std::nullopt;
  double v = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !(v >= 0.0 && v <= 1.0)) {
    throw CliError{
        absl::StrCat("--rehash takes a fraction of the objects from 0 to 1 (e.g. 0.05), not '",
                     EscapeForTerminal(text), "'"),
        2};
  }
  return v;
}

std::optional<CliError> WaitVerdict(const json& done) {
  int failed = 0, unhealed_jobs = 0;
  int64_t unhealed = 0;
  for (const auto& s : done) {
    if (Str(s, "state") != "succeeded") {
      ++failed;
    } else if (Count(s, "unhealed") > 0) {
      ++unhealed_jobs;
      unhealed += Count(s, "unhealed");
    }
  }
  if (failed > 0) return CliError{absl::StrCat(failed, " scrub(s) failed"), 1};
  if (unhealed > 0) {
    return CliError{absl::StrCat("the scrub could not heal ", unhealed, " finding(s) in ",
                                 unhealed_jobs, " job(s); see the report (unhealed entries)"),
                    3};
  }
  return std::nullopt;
}

ScrubCommands::ScrubCommands(CLI::App& app, Globals& g, std::function<void()>& action) : g_(g) {
  auto* scrub = app.add_subcommand(
      "scrub",
      "compare a job's storage with the index (missing, extra, mismatched objects, temp "
      "debris) and heal what can be healed");
  scrub->add_option("RUNNER", runner_, "the job's runner")->type_name("");
  scrub->add_option("JOB", job_, "job name")->type_name("");
  scrub->add_flag("--all", all_, "every job");
  scrub
      ->add_option(
          "--rehash", rehash_,
          "fraction of the objects to re-hash, 0 to 1 (default: the server's --scrub-rehash)")
      ->type_name("F");
  scrub->add_flag("--wait", wait_,
                  "wait for the end and print the report; exit 1 if a scrub failed, 3 if it left "
                  "drift unhealed");
  scrub->add_flag("--json", g.json, "JSON output (with --wait: the scrub, or an array with --all)");
  auto* status = scrub->add_subcommand("status", "per job: last scrub, its findings, next due");
  status->add_option("RUNNER", runner_, "only this runner's jobs")->type_name("");
  status->add_option("JOB", job_, "only this job")->type_name("");
  status->add_flag("--json", g.json, "JSON output");
  scrub->callback([this, status, &action] {
    if (status->parsed()) return;
    action = [this] { Start(); };
  });
  status->callback([this, &action] { action = [this] { Status(); }; });
}

void ScrubCommands::Start() {
  std::optional<double> rehash = ParseRehashFraction(rehash_);
  if (all_ && !runner_.empty()) throw CliError{"--all takes no RUNNER/JOB", 2};
  if (!all_ && (runner_.empty() || job_.empty())) {
    throw CliError{"scrub needs RUNNER JOB, or --all", 2};
  }
  json body = json::object();
  if (rehash) body["rehash_fraction"] = *rehash;
  Api api(g_);
  json queued;
  if (all_) {
    body["all"] = true;
    queued = api.Call("POST", "/scrub", body.dump());
    for (const auto& b : queued.value("already_running", json::array())) {
      std::cerr << "already queued or running: "
                << EscapeForTerminal(b.is_string() ? b.get<std::string>() : b.dump()) << "\n";
    }
  } else {
    queued =
        api.Call("POST", "/runners/" + Seg(runner_) + "/jobs/" + Seg(job_) + "/scrub", body.dump());
  }
  if (!wait_) {
    if (g_.json) return void(PrintJson(queued));
    if (all_) {
      std::cout << "queued " << queued.value("queued", json::array()).size()
                << " scrub(s); follow with: datasync scrub status\n";
    } else {
      std::cout << "scrub " << Text(queued, "id") << " of " << runner_ << "/" << job_
                << " queued; follow with: datasync scrub status " << runner_ << " " << job_ << "\n";
    }
    return;
  }
  json started = all_ ? queued.value("queued", json::array()) : json::array({queued});
  std::cerr << "waiting for " << started.size() << " scrub(s) ...\n";
  json done = json::array();
  for (const auto& q : started) {
    done.push_back(WaitFor(api, Str(q, "id")));
    if (!g_.json) PrintScrub(done.back());
  }
  if (g_.json) PrintJson(all_ ? done : done[0]);
  if (auto verdict = WaitVerdict(done)) throw *verdict;
}

json ScrubCommands::WaitFor(Api& api, const std::string& id) {
  const bool tty = platform::IsTerminal(platform::StdStream::kErr);
  for (;;) {
    json s = api.Call("GET", "/scrubs/" + Seg(id));
    std::string state = Str(s, "state");
    if (Finished(state)) {
      if (tty) std::fprintf(stderr, "\r\033[K");
      return s;
    }
    if (tty) {
      std::fprintf(stderr, "\r%s/%s: %s, %lld objects listed, %lld re-hashed, %s   ",
                   Text(s, "runner").c_str(), Text(s, "job").c_str(), EscapeForTerminal(state).c_str(),
                   static_cast<long long>(Count(s, "objects_listed")),
                   static_cast<long long>(Count(s, "objects_rehashed")), Elapsed(s).c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

void ScrubCommands::Status() {
  Api api(g_);
  std::optional<json> r = api.Find("/scrubs/status");
  if (!r) {
    throw CliError{"this server has no storage scrub (GET /scrubs/status: 404)"};
  }
  json jobs = json::array();
  for (const auto& j : r->value("jobs", json::array())) {
    if (!runner_.empty() && Str(j, "runner") != runner_) continue;
    if (!job_.empty() && Str(j, "job") != job_) continue;
    jobs.push_back(j);
  }
  if (!runner_.empty() && jobs.empty()) {
    throw CliError{job_.empty()
                       ? absl::StrCat("no jobs of runner ", EscapeForTerminal(runner_))
                       : absl::StrCat("no job ", EscapeForTerminal(runner_), "/", EscapeForTerminal(job_))};
  }
  (*r)["jobs"] = jobs;
  if (g_.json) return void(PrintJson(*r));
  std::vector<std::vector<std::string>> rows;
  for (const auto& j : jobs) rows.push_back(StatusRow(j));
  PrintTable({"RUNNER", "JOB", "LAST", "FINISHED", "LISTED", "MISSING", "EXTRA", "MISMATCHED",
              "TEMP", "UNHEALED", "NEXT DUE"},
             rows);
  char rehash[32];
  std::snprintf(rehash, sizeof rehash, "%g%%", Real(*r, "rehash_fraction") * 100);
  int64_t rate = Count(*r, "rate_objects_per_s");
  std::cerr << "scrubbed every " << FormatDuration(std::chrono::seconds(Count(*r, "interval_s")))
            << (rate > 0 ? absl::StrCat(" at up to ", rate, " objects/s")
                         : std::string(", unpaced"))
            << ", re-hashing " << rehash << " of the objects\n";
}

}  // namespace ds::cli
