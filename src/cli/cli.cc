#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/cli_support.h"
#include "cli/drill.h"
#include "cli/scrub.h"
#include "common/crypto.h"
#include "common/escape.h"
#include "common/files.h"
#include "common/json.h"
#include "common/time_util.h"
#include "http/http_client.h"
#include "http/http_types.h"
#include "platform/system.h"

namespace ds {
namespace {

using nlohmann::json;

using cli::Api;
using cli::CliError;
using cli::Env;
using cli::Globals;
using cli::HumanBytes;
using cli::PrintJson;
using cli::PrintTable;
using cli::Seg;
using cli::Raw;
using cli::Str;

int64_t DurationMs(const std::string& text, const char* what) {
  auto d = ParseDuration(text);
  if (!d.ok()) throw CliError{absl::StrCat(what, ": ", d.status().message())};
  return d->count();
}

void PrintRunSummary(const json& r) {
  std::cout << "run " << Str(r, "run_id") << " (" << Str(r, "runner") << "/" << Str(r, "job") << "): "
            << Str(r, "state") << "\n"
            << "  files: " << r.value("files_seen", 0) << " seen, " << r.value("files_planned", 0) << " to upload, "
            << r.value("files_uploaded", 0) << " uploaded, " << r.value("files_failed", 0) << " failed, "
            << r.value("files_skipped", 0) << " skipped\n"
            << "  bytes: " << HumanBytes(r.value("bytes_uploaded", uint64_t{0})) << " uploaded of "
            << HumanBytes(r.value("bytes_seen", uint64_t{0})) << " seen\n";
  int64_t s = r.value("started_at_ms", int64_t{0}), f = r.value("finished_at_ms", int64_t{0});
  if (f > 0) std::cout << "  took: " << FormatDuration(std::chrono::milliseconds(f - s)) << "\n";
  if (!Str(r, "error").empty()) std::cout << "  error: " << Str(r, "error") << "\n";
}

bool Terminal(const std::string& state) { return !state.empty() && state != "running"; }

// Under `runners list`: every registration waiting on a runner (host, address, time), so the
// operator can tell a second registration under one name from the first and choose.
void PrintPendingEnrollments(const json& runners) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& x : runners) {
    if (!x.contains("pending_enrollments")) continue;
    for (const auto& e : x["pending_enrollments"]) {
      rows.push_back({Str(x, "name"), Str(e, "id"), Str(e, "hostname"), Str(e, "address"),
                      Str(e, "created_at")});
    }
  }
  if (rows.empty()) return;
  std::cout << "\npending enrollments (datasync runners approve|reject NAME --enrollment ID):\n";
  PrintTable({"RUNNER", "ENROLLMENT", "HOST", "ADDRESS", "REGISTERED"}, rows);
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"datasync: operate a DataSync fleet over the admin API"};
  app.require_subcommand(1);
  Globals g;
  g.server = Env("DATASYNC_SERVER", "https://127.0.0.1:8080");
  app.add_option("--server", g.server, "server URL (env DATASYNC_SERVER)");
  app.add_option("--ca-file", g.ca_file,
                 "CA bundle the server's certificate must chain to (env DATASYNC_CA_FILE; default: the system CAs)");
  app.add_option("--pinned-key", g.pinned_key,
                 "the server's public-key pin, sha256//BASE64 (env DATASYNC_PINNED_KEY)");
  app.add_flag("--allow-http", g.allow_http, "allow a plain http:// server URL (env DATASYNC_ALLOW_HTTP=1)");
  app.add_option("--token", g.token, "admin API token (env DATASYNC_TOKEN)");
  app.add_option("--token-file", g.token_file, "file holding the token (env DATASYNC_TOKEN_FILE, default ./var/admin.token)");
  std::function<void()> action;

  // runners
  auto* runners = app.add_subcommand("runners", "enrolled agents")->require_subcommand(1);
  auto* rl = runners->add_subcommand("list", "list runners");
  rl->add_flag("--json", g.json, "JSON output");
  rl->callback([&] {
    action = [&] {
      json r = Api(g).Call("GET", "/runners");
      if (g.json) return void(PrintJson(r["runners"]));
      std::vector<std::vector<std::string>> rows;
      for (const auto& x : r["runners"]) {
        rows.push_back({Str(x, "name"), Str(x, "status"), x.value("online", false) ? "online" : "offline",
                        Str(x, "group").empty() ? "-" : Str(x, "group"), Str(x, "hostname"), Str(x, "agent_version"), Str(x, "runtime_state"),
                        Str(x, "last_heartbeat_at")});
      }
      PrintTable({"NAME", "STATUS", "CONN", "GROUP", "HOST", "VERSION", "STATE", "LAST HEARTBEAT"}, rows);
      PrintPendingEnrollments(r["runners"]);
    };
  });
  std::string runner_name, job_name, enrollment_id;
  for (std::string verb : {"approve", "reject", "revoke"}) {
    auto* c = runners->add_subcommand(verb, verb + " a runner");
    c->add_option("NAME", runner_name, "runner name")->required();
    if (verb != "revoke") {
      c->add_option("--enrollment", enrollment_id,
                    "which pending enrollment (needed when several wait: see runners list)");
    }
    c->callback([&, verb] {
      action = [&, verb] {
        json body = json::object();
        if (!enrollment_id.empty()) body["enrollment"] = enrollment_id;
        json r = Api(g).Call("POST", "/runners/" + Seg(runner_name) + "/" + verb, body.dump());
        std::cout << "runner " << runner_name << " is now " << Str(r, "status")
                  << (Str(r, "enrollment").empty() ? ""
                                                   : " (enrollment " + Str(r, "enrollment") + ")")
                  << "\n";
      };
    });
  }
  auto* rd = runners->add_subcommand(
      "delete", "delete a pending, rejected or revoked runner (frees its name)");
  rd->add_option("NAME", runner_name, "runner name")->required();
  rd->callback([&] {
    action = [&] {
      json r = Api(g).Call("DELETE", "/runners/" + Seg(runner_name));
      std::cout << "runner " << runner_name << " (" << Str(r, "status")
                << ") deleted with its enrollments; the name is free\n";
    };
  });
  std::string replace_with;
  auto* rr = runners->add_subcommand("replace", "bind a new PC (its pending registration) to an existing runner");
  rr->add_option("NAME", runner_name, "the existing runner")->required();
  rr->add_option("--with", replace_with, "name the new PC registered under (default: NAME)");
  rr->add_option("--enrollment", enrollment_id,
                 "which pending registration (needed when several wait: see runners list)");
  rr->callback([&] {
    action = [&] {
      json body = json::object();
      if (!replace_with.empty()) body["with"] = replace_with;
      if (!enrollment_id.empty()) body["enrollment"] = enrollment_id;
      json r = Api(g).Call("POST", "/runners/" + Seg(runner_name) + "/replace", body.dump());
      std::cout << "runner " << runner_name << " now belongs to host " << Str(r, "hostname")
                << "; its jobs and index rows are kept and the old machine's key no longer works\n";
    };
  });
  std::string group_name;
  auto* rg = runners->add_subcommand("group", "put a runner in a group (created on first use); no GROUP: in none");
  rg->add_option("RUNNER", runner_name)->required();
  rg->add_option("GROUP", group_name, "group name");
  rg->callback([&] {
    action = [&] {
      json r = Api(g).Call("PUT", "/runners/" + Seg(runner_name) + "/group",
                           json{{"group", group_name}}.dump());
      std::cout << "runner " << runner_name
                << (group_name.empty() ? std::string(" is in no group") : " is in group " + group_name)
                << "\n";
    };
  });
  auto* rs = runners->add_subcommand("show", "one runner");
  rs->add_option("NAME", runner_name)->required();
  rs->callback([&] { action = [&] { PrintJson(Api(g).Call("GET", "/runners/" + Seg(runner_name))); }; });

  // jobs
  auto* jobs = app.add_subcommand("jobs", "job definitions")->require_subcommand(1);
  std::string source, dest, interval = "1h", settle = "60s";
  std::vector<std::string> includes, excludes;
  bool disabled = false;
  auto* ja = jobs->add_subcommand("add", "add a job to a runner");
  ja->add_option("RUNNER", runner_name)->required();
  ja->add_option("JOB", job_name)->required();
  ja->add_option("--source", source, "folder on the runner")->required();
  ja->add_option("--dest", dest, "destination prefix in storage")->required();
  ja->add_option("--include", includes, "glob of files to include (repeatable)");
  ja->add_option("--exclude", excludes, "glob of files to exclude (repeatable)");
  ja->add_option("--interval", interval, "time between runs, e.g. 15m (default 1h)");
  ja->add_option("--settle", settle, "minimum file age before syncing (default 60s)");
  ja->add_flag("--disabled", disabled, "create the job disabled");
  ja->callback([&] {
    action = [&] {
      json body{{"name", job_name}, {"source", source}, {"dest_prefix", dest}, {"includes", includes},
                {"excludes", excludes}, {"interval_ms", DurationMs(interval, "--interval")},
                {"settle_ms", DurationMs(settle, "--settle")}, {"enabled", !disabled}};
      Api(g).Call("POST", "/runners/" + Seg(runner_name) + "/jobs/" + Seg(job_name), body.dump());
      std::cout << "job " << runner_name << "/" << job_name << " added: " << source << " -> " << dest << "\n";
    };
  });
  auto* jl = jobs->add_subcommand("list", "list jobs");
  jl->add_option("RUNNER", runner_name, "only this runner's jobs");
  jl->add_flag("--json", g.json, "JSON output (the format `jobs import` reads)");
  jl->callback([&] {
    action = [&] {
      json r = Api(g).Call("GET", runner_name.empty() ? "/jobs" : "/jobs?runner=" + Seg(runner_name));
      if (g.json) return void(PrintJson(r));
      std::vector<std::vector<std::string>> rows;
      for (const auto& j : r["jobs"]) {
        rows.push_back({Str(j, "runner"), Str(j, "name"), Str(j, "source"), Str(j, "dest_prefix"),
                        FormatDuration(std::chrono::milliseconds(j.value("interval_ms", 0))),
                        FormatDuration(std::chrono::milliseconds(j.value("settle_ms", 0))),
                        j.value("enabled", true) ? "yes" : "no"});
      }
      PrintTable({"RUNNER", "JOB", "SOURCE", "DEST", "INTERVAL", "SETTLE", "ENABLED"}, rows);
    };
  });
  auto* jr = jobs->add_subcommand("rm", "delete a job (stored files are kept)");
  jr->add_option("RUNNER", runner_name)->required();
  jr->add_option("JOB", job_name)->required();
  jr->callback([&] {
    action = [&] {
      Api(g).Call("DELETE", "/runners/" + Seg(runner_name) + "/jobs/" + Seg(job_name));
      std::cout << "job " << runner_name << "/" << job_name << " deleted\n";
    };
  });
  std::string import_file;
  auto* ji = jobs->add_subcommand("import", "create or update jobs from a file written by `jobs list --json`");
  ji->add_option("FILE", import_file, "JSON file ('-' for stdin)")->required();
  ji->callback([&] {
    action = [&] {
      std::string text;
      if (import_file == "-") {
        text.assign(std::istreambuf_iterator<char>(std::cin), {});
      } else {
        auto t = ReadFileToString(import_file, 64 << 20);
        if (!t.ok()) throw CliError{std::string(t.status().message())};
        text = *t;
      }
      absl::StatusOr<json> parsed = ParseJson(text);
      if (!parsed.ok()) throw CliError{absl::StrCat(import_file, ": not valid JSON: ", parsed.status().message())};
      json doc = *std::move(parsed);
      json list = doc.is_object() ? doc.value("jobs", json::array()) : doc;
      if (!list.is_array()) throw CliError{absl::StrCat(import_file, ": expected {\"jobs\": [...]} or an array")};
      // Validate every entry before changing anything.
      for (size_t i = 0; i < list.size(); ++i) {
        if (!list[i].is_object() || Raw(list[i], "runner").empty() || Raw(list[i], "name").empty()) {
          throw CliError{absl::StrCat(import_file, ": jobs[", i, "] needs \"runner\" and \"name\"")};
        }
      }
      Api api(g);
      for (auto j : list) {
        std::string r = Raw(j, "runner"), n = Raw(j, "name");
        j.erase("runner");
        j.erase("id");
        j.erase("created_at");
        api.Call("PUT", "/runners/" + Seg(r) + "/jobs/" + Seg(n) + "?create_runner=1", j.dump());
      }
      std::cout << "imported " << list.size() << " job(s)\n";
    };
  });

  // sync
  bool wait = false;
  std::string timeout = "1h";
  auto* sync = app.add_subcommand("sync", "sync a job now");
  sync->add_option("RUNNER", runner_name)->required();
  sync->add_option("JOB", job_name)->required();
  sync->add_flag("--wait", wait, "wait for the run and print its summary; non-zero exit unless it succeeded");
  sync->add_option("--timeout", timeout, "with --wait: give up after this long (default 1h)");
  sync->add_flag("--json", g.json, "JSON output");
  sync->callback([&] {
    action = [&] {
      Api api(g);
      int64_t limit_ms = DurationMs(timeout, "--timeout");
      json q = api.Call("POST", "/runners/" + Seg(runner_name) + "/jobs/" + Seg(job_name) + "/sync");
      std::string run_id = Raw(q, "run_id");
      if (!wait) {
        if (g.json) return void(PrintJson(q));
        std::cout << "sync of " << runner_name << "/" << job_name << " queued as run " << run_id << "\n";
        return;
      }
      std::cerr << "waiting for run " << run_id << " ...\n";
      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
      for (;;) {
        auto r = api.Find("/runs/" + run_id);
        if (r && Terminal(Str(*r, "state"))) {
          if (g.json) {
            PrintJson(*r);
          } else {
            PrintRunSummary(*r);
          }
          if (Str(*r, "state") != "succeeded") throw CliError{absl::StrCat("run ", run_id, " ", Str(*r, "state")), 1};
          return;
        }
        if (std::chrono::steady_clock::now() > deadline) {
          throw CliError{absl::StrCat("timed out waiting for run ", run_id, r ? " (still running)" : " (agent has not started it)")};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    };
  });

  // runs / run / files / status
  int limit = 20;
  std::string state_filter;
  auto* runs = app.add_subcommand("runs", "recent runs, newest first");
  runs->add_option("RUNNER", runner_name);
  runs->add_option("JOB", job_name);
  runs->add_option("--state", state_filter, "only runs in this state");
  runs->add_option("--limit", limit, "how many (default 20)");
  runs->add_flag("--json", g.json, "JSON output");
  runs->callback([&] {
    action = [&] {
      std::string q = absl::StrCat("/runs?limit=", limit);
      if (!runner_name.empty()) q += "&runner=" + Seg(runner_name);
      if (!job_name.empty()) q += "&job=" + Seg(job_name);
      if (!state_filter.empty()) q += "&state=" + Seg(state_filter);
      json r = Api(g).Call("GET", q);
      if (g.json) return void(PrintJson(r["runs"]));
      std::vector<std::vector<std::string>> rows;
      for (const auto& x : r["runs"]) {
        rows.push_back({Str(x, "run_id"), Str(x, "runner"), Str(x, "job"), Str(x, "state"), Str(x, "trigger"),
                        std::to_string(x.value("files_uploaded", 0)), std::to_string(x.value("files_failed", 0)),
                        HumanBytes(x.value("bytes_uploaded", uint64_t{0})), Str(x, "started_at")});
      }
      PrintTable({"RUN", "RUNNER", "JOB", "STATE", "TRIGGER", "UPLOADED", "FAILED", "BYTES", "STARTED"}, rows);
    };
  });
  std::string run_id;
  bool with_files = false;
  auto* run = app.add_subcommand("run", "one run by correlation id");
  run->add_option("RUN_ID", run_id)->required();
  run->add_flag("--files", with_files, "also list per-file results");
  run->add_flag("--json", g.json, "JSON output");
  run->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.Call("GET", "/runs/" + Seg(run_id));
      json files;
      if (with_files) files = api.Call("GET", "/runs/" + Seg(run_id) + "/files?limit=10000")["files"];
      if (g.json) {
        if (with_files) r["files"] = files;
        return void(PrintJson(r));
      }
      PrintRunSummary(r);
      if (with_files) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& f : files) {
          rows.push_back({Str(f, "path"), Str(f, "planned_reason"), Str(f, "result"), Str(f, "error")});
        }
        PrintTable({"PATH", "PLANNED", "RESULT", "ERROR"}, rows);
      }
    };
  });
  bool all = false;
  int file_limit = 1000;
  auto* files = app.add_subcommand("files", "index rows of a job");
  files->add_option("RUNNER", runner_name)->required();
  files->add_option("JOB", job_name)->required();
  files->add_option("--limit", file_limit, "rows per page (default 1000)");
  files->add_flag("--all", all, "every row, following pages");
  files->add_flag("--json", g.json, "JSON output");
  files->callback([&] {
    action = [&] {
      Api api(g);
      std::string base = "/runners/" + Seg(runner_name) + "/jobs/" + Seg(job_name) + "/files?limit=" + std::to_string(file_limit);
      json out = json::array();
      std::string after;
      int64_t total = 0;
      do {
        json page = api.Call("GET", base + (after.empty() ? "" : "&after=" + Seg(after)));
        total = page.value("total", int64_t{0});
        for (auto& f : page["files"]) out.push_back(f);
        after = all ? Raw(page, "next_after") : "";
      } while (!after.empty());
      if (g.json) return void(PrintJson(out));
      std::vector<std::vector<std::string>> rows;
      for (const auto& f : out) {
        rows.push_back({Str(f, "path"), std::to_string(f.value("size", uint64_t{0})), Str(f, "sha256"), Str(f, "synced_at")});
      }
      PrintTable({"PATH", "SIZE", "SHA256", "SYNCED"}, rows);
      std::cerr << out.size() << " of " << total << " file(s)\n";
    };
  });
  // reconcile
  bool verify = false, all_jobs = false;
  auto* rec = app.add_subcommand("reconcile", "rebuild a job's index rows from what storage holds");
  rec->add_option("RUNNER", runner_name);
  rec->add_option("JOB", job_name);
  rec->add_flag("--all", all_jobs, "every job");
  rec->add_flag("--verify", verify, "re-hash every stored file (reports checksum mismatches)");
  rec->add_flag("--wait", wait, "wait for the end and print the report; non-zero exit on failure or mismatch");
  rec->add_flag("--json", g.json, "JSON output");
  auto* rec_status = rec->add_subcommand("status", "reconciles in progress and recent ones");
  rec_status->add_option("RUNNER", runner_name);
  rec_status->add_option("JOB", job_name);
  rec_status->add_flag("--json", g.json, "JSON output");
  auto print_reconcile = [](const json& r) {
    std::cout << "reconcile " << Str(r, "id") << " of " << Str(r, "runner") << "/" << Str(r, "job") << ": "
              << Str(r, "state") << (r.value("verify", false) ? " (verified)" : "") << "\n"
              << "  storage: " << r.value("files_seen", 0) << " files, " << HumanBytes(r.value("bytes_seen", uint64_t{0}))
              << " in " << FormatDuration(std::chrono::milliseconds(static_cast<int64_t>(r.value("elapsed_s", 0.0) * 1000)))
              << "\n  index rows: +" << r.value("rows_added", 0) << " added, -" << r.value("rows_removed", 0)
              << " removed, " << r.value("rows_updated", 0) << " updated, " << r.value("rows_unchanged", 0)
              << " unchanged\n  checksum mismatches: " << r.value("mismatches", 0)
              << "; temp files of interrupted uploads: " << r.value("temp_files", 0) << "\n";
    for (const auto& m : r["report"].value("mismatches", json::array())) {
      std::cout << "    mismatch: " << Str(m, "path") << " content " << Str(m, "actual_sha256") << " stored "
                << Str(m, "stored_sha256") << " index " << Str(m, "index_sha256") << Str(m, "error") << "\n";
    }
    if (!Str(r, "error").empty()) std::cout << "  error: " << Str(r, "error") << "\n";
  };
  auto wait_reconciles = [&](Api& api, std::vector<std::string> ids) {
    int failed = 0, mismatched = 0;
    json done = json::array();
    for (const auto& id : ids) {
      for (;;) {
        json r = api.Call("GET", "/reconciles/" + id);
        std::string st = Str(r, "state");
        if (st == "succeeded" || st == "failed") {
          if (!g.json) print_reconcile(r);
          done.push_back(r);
          failed += st == "failed";
          mismatched += r.value("mismatches", 0) > 0;
          break;
        }
        if (platform::IsTerminal(platform::StdStream::kErr)) {
          std::fprintf(stderr, "\r%s/%s: %s %.0f%% (%llu files, %.0f files/s)   ", Str(r, "runner").c_str(),
                       Str(r, "job").c_str(), st.c_str(), r.value("percent", 0.0),
                       static_cast<unsigned long long>(r.value("files_seen", 0)), r.value("files_per_s", 0.0));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      if (platform::IsTerminal(platform::StdStream::kErr)) std::fprintf(stderr, "\r\033[K");
    }
    if (g.json) PrintJson(done);
    if (failed > 0) throw CliError{absl::StrCat(failed, " reconcile(s) failed")};
    if (mismatched > 0) throw CliError{absl::StrCat("checksum mismatches found in ", mismatched, " job(s)")};
  };
  rec->callback([&] {
    if (rec_status->parsed()) return;
    action = [&] {
      Api api(g);
      json body{{"verify", verify}};
      std::vector<std::string> ids;
      if (all_jobs) {
        if (!runner_name.empty()) throw CliError{"--all takes no RUNNER/JOB", 2};
        json r = api.Call("POST", "/reconcile", body.dump());
        for (const auto& q : r["queued"]) ids.push_back(Str(q, "id"));
        for (const auto& b : r["already_running"]) std::cerr << "already running: " << EscapeForTerminal(b.get<std::string>()) << "\n";
        if (!wait) {
          if (g.json) return void(PrintJson(r));
          std::cout << "queued " << ids.size() << " reconcile(s); follow with: datasync reconcile status\n";
          return;
        }
      } else {
        if (runner_name.empty() || job_name.empty()) throw CliError{"reconcile needs RUNNER JOB, or --all", 2};
        json r = api.Call("POST", "/runners/" + Seg(runner_name) + "/jobs/" + Seg(job_name) + "/reconcile", body.dump());
        ids.push_back(Str(r, "id"));
        if (!wait) {
          if (g.json) return void(PrintJson(r));
          std::cout << "reconcile " << Str(r, "id") << " of " << runner_name << "/" << job_name
                    << " queued; follow with: datasync reconcile status\n";
          return;
        }
      }
      wait_reconciles(api, ids);
    };
  });
  rec_status->callback([&] {
    action = [&] {
      std::string q = "/reconciles?limit=20";
      if (!runner_name.empty()) q += "&runner=" + Seg(runner_name);
      if (!job_name.empty()) q += "&job=" + Seg(job_name);
      json r = Api(g).Call("GET", q);
      if (g.json) return void(PrintJson(r["reconciles"]));
      std::vector<std::vector<std::string>> rows;
      char buf[64];
      for (const auto& x : r["reconciles"]) {
        std::snprintf(buf, sizeof buf, "%.0f%%", x.value("percent", 0.0));
        std::string eta = x.contains("eta_s") ? FormatDuration(std::chrono::milliseconds(static_cast<int64_t>(x["eta_s"].get<double>() * 1000))) : "";
        char rate[32];
        std::snprintf(rate, sizeof rate, "%.0f/s", x.value("files_per_s", 0.0));
        rows.push_back({Str(x, "id").substr(0, 8), Str(x, "runner") + "/" + Str(x, "job"), Str(x, "state"), buf,
                        std::to_string(x.value("files_seen", 0)), HumanBytes(x.value("bytes_seen", uint64_t{0})), rate, eta,
                        "+" + std::to_string(x.value("rows_added", 0)) + " -" + std::to_string(x.value("rows_removed", 0)),
                        std::to_string(x.value("mismatches", 0)), Str(x, "requested_at")});
      }
      PrintTable({"ID", "JOB", "STATE", "DONE", "FILES", "BYTES", "RATE", "ETA", "ROWS", "MISMATCH", "REQUESTED"}, rows);
    };
  });

  cli::ScrubCommands scrub(app, g, action);

  // drills
  DrillOptions drill;
  auto* releases = app.add_subcommand("releases", "agent releases kept in storage under releases/")
                       ->require_subcommand(1);
  std::string release_version;
  std::vector<std::string> release_files;
  auto* rel_list = releases->add_subcommand("list", "published release files");
  rel_list->add_option("VERSION", release_version, "only this version");
  rel_list->add_flag("--json", g.json, "JSON output");
  rel_list->callback([&] {
    action = [&] {
      json r = Api(g).Call("GET", release_version.empty() ? "/releases"
                                                          : "/releases?version=" + Seg(release_version));
      if (g.json) return void(PrintJson(r));
      std::vector<std::vector<std::string>> rows;
      for (const auto& f : r["items"]) {
        rows.push_back({Str(f, "version"), Str(f, "file"), HumanBytes(f.value("size", uint64_t{0})),
                        Str(f, "sha256")});
      }
      PrintTable({"VERSION", "FILE", "SIZE", "SHA-256"}, rows);
    };
  });
  auto* rel_add = releases->add_subcommand(
      "add", "publish files as a release version (immutable: a changed file needs a new version)");
  rel_add->add_option("VERSION", release_version)->required();
  rel_add->add_option("FILES", release_files, "files to publish, stored under their base names")
      ->required();
  rel_add->callback([&] {
    action = [&] {
      Api api(g);
      for (const std::string& path : release_files) {
        auto bytes = ReadFileToString(path, int64_t{4} << 30);
        if (!bytes.ok()) throw CliError{std::string(bytes.status().message())};
        const std::string name = std::filesystem::path(path).filename().string();
        json r = api.Call("PUT", "/releases/" + Seg(release_version) + "/" + Seg(name), *bytes,
                          {{"Content-Type", "application/octet-stream"},
                           {"X-Content-SHA256", Sha256Hex(*bytes)}});
        std::cout << (r.value("created", false) ? "published " : "already published ")
                  << Str(r, "key") << " (" << HumanBytes(r.value("size", uint64_t{0})) << ", sha256 "
                  << Str(r, "sha256") << ")\n";
      }
    };
  });

  auto* drills = app.add_subcommand("drill", "rehearse a recovery scenario on a scratch copy and measure it")
                     ->require_subcommand(1);
  auto* d_loss = drills->add_subcommand(
      "index-loss", "fresh index, migrations, job import, reconcile all, agent reconnect, sync round trip; RTO/RPO");
  auto* d_down = drills->add_subcommand("server-down", "scratch server stopped while an agent syncs; reconnect and drift");
  d_down->add_option("--seconds", drill.down_seconds, "how long the server stays down (default 20)");
  for (auto* d : {d_loss, d_down}) {
    d->add_flag("--keep", drill.keep, "keep the scratch directory");
    d->add_flag("--json", g.json, "JSON output");
    d->add_option("--storage-key-file", drill.storage_key_file, "account key for object storage (scratch server)");
  }
  auto drill_setup = [&] {
    Api api(g);  // validates the token early
    (void)api;
    drill.server = g.server;
    drill.trust = cli::ServerTrust(g);
    drill.token = g.token.empty() ? Env("DATASYNC_TOKEN") : g.token;
    if (drill.token.empty()) {
      std::string file = g.token_file.empty() ? Env("DATASYNC_TOKEN_FILE", "./var/admin.token") : g.token_file;
      auto t = ReadFileToString(file, 4096);
      if (t.ok()) drill.token = std::string(absl::StripAsciiWhitespace(*t));
    }
    drill.json = g.json;
    std::error_code ec;
    drill.bin_dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path().string();
  };
  d_loss->callback([&] {
    action = [&] {
      drill_setup();
      int rc = DrillIndexLoss(drill);
      if (rc != 0) throw CliError{"the index-loss drill did not meet its objective (see above)", rc};
    };
  });
  d_down->callback([&] {
    action = [&] {
      drill_setup();
      int rc = DrillServerDown(drill);
      if (rc != 0) throw CliError{"the server-down drill did not meet its objective (see above)", rc};
    };
  });

  auto* status = app.add_subcommand("status", "server, index and fleet summary");
  status->add_flag("--json", g.json, "JSON output");
  status->callback([&] {
    action = [&] {
      json r = Api(g).Call("GET", "/status");
      if (g.json) return void(PrintJson(r));
      std::cout << "server " << Str(r, "version") << ", index " << Str(r, "index") << " (schema v"
                << Str(r, "schema_version") << "), storage " << Str(r, "storage") << "\n"
                << "runners: " << r["runners"].dump() << ", online " << Str(r, "runners_online")
                << "; jobs: " << Str(r, "jobs") << "\n"
                << "index size: " << HumanBytes(r.value("index_size_bytes", uint64_t{0}));
      if (r.value("index_budget_bytes", int64_t{0}) > 0) {
        char pct[32];
        std::snprintf(pct, sizeof pct, "%.1f%%", r.value("index_budget_used_percent", 0.0));
        std::cout << " of a " << HumanBytes(r.value("index_budget_bytes", uint64_t{0})) << " budget (" << pct << ")";
      } else {
        std::cout << " (no budget set: --index-budget)";
      }
      std::cout << "; runs kept " << r.value("run_retention_days", 0) << " days; reconciles active: "
                << r.value("reconciles_active", 0) << "\n";
      std::cout << "alerts active: " << r.value("alerts_active", 0) << " (datasync alerts --active)";
      if (r.contains("channels_failing") && !r["channels_failing"].empty()) {
        std::cout << "; FAILING notification channels: " << r["channels_failing"].dump()
                  << " (datasync alerts channels list)";
      }
      std::cout << "\n";
    };
  });

  // ---- logs and alerts (issue 8) ------------------------------------------------------------
  std::string log_since, log_level, log_grep;
  bool log_follow = false;
  int log_limit = 100;
  auto* logs = app.add_subcommand("logs", "a runner's shipped agent logs, newest last");
  logs->add_option("RUNNER", runner_name, "runner name")->required();
  logs->add_option("--since", log_since, "only records newer than this: a duration (15m, 2h, 1d) or Unix ms");
  logs->add_option("--level", log_level, "debug|info|warn|error: that level and above");
  logs->add_option("--grep", log_grep, "only messages containing this text");
  logs->add_option("--limit", log_limit, "how many (default 100, at most 1000)");
  logs->add_flag("-f,--follow", log_follow, "keep printing new records (Ctrl-C to stop)");
  logs->add_flag("--json", g.json, "JSON output (one object per line)");
  logs->callback([&] {
    action = [&] {
      Api api(g);
      std::string q = absl::StrCat("/logs?runner=", Seg(runner_name), "&limit=", std::clamp(log_limit, 1, 1000));
      if (!log_level.empty()) q += "&level=" + Seg(log_level);
      if (!log_grep.empty()) q += "&grep=" + Seg(log_grep);
      if (!log_since.empty()) {
        int64_t since = 0;
        if (log_since.find_first_not_of("0123456789") == std::string::npos) {
          since = std::stoll(log_since);
        } else {
          auto d = ParseDuration(log_since);
          if (!d.ok()) throw CliError{absl::StrCat("--since: ", d.status().message()), 2};
          since = SystemClock()->NowUnixMs() - d->count();
        }
        q += absl::StrCat("&since=", since);
      }
      auto print = [&](const json& x) {
        if (g.json) return void(PrintJson(x, -1));
        std::string level = Str(x, "level");
        std::cout << FormatIsoUtc(x.value("time_ms", int64_t{0})) << " " << level
                  << std::string(level.size() < 5 ? 5 - level.size() : 0, ' ') << " " << Str(x, "message") << "\n";
      };
      json r = api.Call("GET", q);
      int64_t last_id = 0;
      const auto& items = r["items"];
      for (auto it = items.rbegin(); it != items.rend(); ++it) {  // oldest first
        print(*it);
        last_id = std::max(last_id, it->value("id", int64_t{0}));
      }
      while (log_follow) {
        std::this_thread::sleep_for(std::chrono::seconds(2));
        json more = api.Call("GET", q + absl::StrCat("&after_id=", last_id));
        for (const auto& x : more["items"]) {
          print(x);
          last_id = std::max(last_id, x.value("id", int64_t{0}));
        }
        std::cout.flush();
      }
    };
  });

  bool alerts_active = false;
  int alert_limit = 50;
  std::string alert_id, rule_name, rule_kind, rule_severity, rule_scope, channel_name, channel_webhook,
      channel_format = "json", channel_smtp, channel_from, channel_min_severity;
  std::vector<std::string> rule_params, channel_to;
  auto* alerts = app.add_subcommand("alerts", "alert history; ack, rules and notification channels");
  alerts->add_flag("--active", alerts_active, "only unresolved alerts");
  alerts->add_option("--limit", alert_limit, "how many (default 50)");
  alerts->add_flag("--json", g.json, "JSON output");
  auto print_alerts = [&](const json& items) {
    if (g.json) return void(PrintJson(items));
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : items) {
      std::string state = a["resolved_at_ms"].is_null() ? "ACTIVE" : "resolved";
      if (!a["acknowledged_by"].is_null()) state += " (ack " + Str(a, "acknowledged_by") + ")";
      rows.push_back({Str(a, "id"), Str(a, "severity"), state, Str(a, "rule_name"), Str(a, "subject"),
                      FormatIsoUtc(a.value("fired_at_ms", int64_t{0})), Str(a, "message")});
    }
    PrintTable({"ID", "SEVERITY", "STATE", "RULE", "SUBJECT", "FIRED", "MESSAGE"}, rows);
  };
  alerts->callback([&] {
    if (!alerts->get_subcommands().empty()) return;
    action = [&] {
      json r = Api(g).Call("GET", absl::StrCat("/alerts?limit=", std::clamp(alert_limit, 1, 1000),
                                               alerts_active ? "&active=1" : ""));
      print_alerts(r["items"]);
    };
  });
  auto* ack = alerts->add_subcommand("ack", "acknowledge an alert (a 'file changed' alert is closed by it)");
  ack->add_option("ID", alert_id, "alert id")->required();
  ack->callback([&] {
    action = [&] {
      json a = Api(g).Call("POST", "/alerts/" + Seg(alert_id) + "/ack", "{}");
      if (g.json) return void(PrintJson(a));
      std::cout << "alert " << alert_id << " acknowledged by " << Str(a, "acknowledged_by") << "\n";
    };
  });

  // rules
  auto* rules = alerts->add_subcommand("rules", "alert rules")->require_subcommand(1);
  auto rule_body = [&](bool create) {
    json body = json::object();
    if (create) body["name"] = rule_name;
    if (!rule_kind.empty()) body["kind"] = rule_kind;
    if (!rule_severity.empty()) body["severity"] = rule_severity;
    if (!rule_scope.empty()) body["scope"] = rule_scope == "none" ? json(nullptr) : json(rule_scope);
    if (!rule_params.empty()) {
      json params = json::object();
      for (const auto& kv : rule_params) {
        size_t eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) throw CliError{"--param takes KEY=VALUE", 2};
        json v = ParseJsonOr(kv.substr(eq + 1));
        params[kv.substr(0, eq)] = v.is_discarded() ? json(kv.substr(eq + 1)) : v;
      }
      body["params"] = params;
    }
    return body;
  };
  auto print_rules = [&](const json& items) {
    if (g.json) return void(PrintJson(items));
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : items) {
      rows.push_back({Str(x, "id"), Str(x, "name"), Str(x, "kind"), Str(x, "severity"),
                      x["scope"].is_null() ? "-" : Str(x, "scope"), x["params"].dump(),
                      x.value("enabled", false) ? "yes" : "no"});
    }
    PrintTable({"ID", "NAME", "KIND", "SEVERITY", "SCOPE", "PARAMS", "ENABLED"}, rows);
  };
  auto* rls = rules->add_subcommand("list", "list rules");
  rls->add_flag("--json", g.json, "JSON output");
  rls->callback([&] { action = [&] { print_rules(Api(g).Call("GET", "/alert-rules")["items"]); }; });
  auto* radd = rules->add_subcommand("add", "add a rule");
  auto* rset = rules->add_subcommand("set", "change a rule");
  for (auto* c : {radd, rset}) {
    c->add_option("NAME", rule_name, "rule name")->required();
    c->add_option("--kind", rule_kind, "runner_offline, job_no_sync, consecutive_failed_runs, storage_failing, "
                                       "index_size, file_changed_after_sync, pending_registration, clock_skew, "
                                       "disk_free_low, channel_failing");
    c->add_option("--severity", rule_severity, "info|warning|critical");
    c->add_option("--scope", rule_scope, "runner:NAME, group:NAME, job:RUNNER/JOB, or none");
    c->add_option("--param", rule_params, "threshold KEY=VALUE, e.g. minutes=10 (repeatable)");
    c->add_flag("--json", g.json, "JSON output");
  }
  radd->callback([&] {
    action = [&] {
      if (rule_kind.empty()) throw CliError{"rules add needs --kind", 2};
      print_rules(json::array({Api(g).Call("POST", "/alert-rules", rule_body(true).dump())}));
    };
  });
  rset->callback([&] {
    action = [&] { print_rules(json::array({Api(g).Call("PATCH", "/alert-rules/" + Seg(rule_name), rule_body(false).dump())})); };
  });
  for (std::string verb : {"enable", "disable", "rm"}) {
    auto* c = rules->add_subcommand(verb, verb == "rm" ? "delete a rule (and its history)" : verb + " a rule");
    c->add_option("NAME", rule_name, "rule name or id")->required();
    c->callback([&, verb] {
      action = [&, verb] {
        Api api(g);
        if (verb == "rm") {
          api.Call("DELETE", "/alert-rules/" + Seg(rule_name));
          std::cout << "rule " << rule_name << " deleted\n";
        } else {
          json body{{"enabled", verb == "enable"}};
          api.Call("PATCH", "/alert-rules/" + Seg(rule_name), body.dump());
          std::cout << "rule " << rule_name << " " << verb << "d\n";
        }
      };
    });
  }

  // channels
  auto* channels = alerts->add_subcommand("channels", "notification channels")->require_subcommand(1);
  auto* cls = channels->add_subcommand("list", "list channels (failing ones show their last error)");
  cls->add_flag("--json", g.json, "JSON output");
  cls->callback([&] {
    action = [&] {
      json items = Api(g).Call("GET", "/notification-channels")["items"];
      if (g.json) return void(PrintJson(items));
      std::vector<std::vector<std::string>> rows;
      for (const auto& x : items) {
        std::string state = !x.value("enabled", false) ? "disabled" : x.value("failing", false) ? "FAILING: " + Str(x, "last_error") : "ok";
        rows.push_back({Str(x, "id"), Str(x, "name"), Str(x, "kind"), Str(x, "min_severity"), x["config"].dump(), state});
      }
      PrintTable({"ID", "NAME", "KIND", "MIN SEVERITY", "CONFIG", "STATE"}, rows);
    };
  });
  auto* cadd = channels->add_subcommand("add", "add a webhook or e-mail channel");
  auto* cset = channels->add_subcommand("set", "change a channel");
  for (auto* c : {cadd, cset}) {
    c->add_option("NAME", channel_name, "channel name")->required();
    c->add_option("--webhook", channel_webhook, "webhook URL (JSON POST)");
    c->add_option("--format", channel_format, "webhook payload: json (default), slack or teams");
    c->add_option("--smtp", channel_smtp, "e-mail: smtp://host:port or smtps://host:port");
    c->add_option("--from", channel_from, "e-mail sender address");
    c->add_option("--to", channel_to, "e-mail recipient (repeatable)");
    c->add_option("--min-severity", channel_min_severity, "info (default), warning or critical");
    c->add_flag("--json", g.json, "JSON output");
  }
  auto channel_body = [&](bool create) {
    json body = json::object();
    if (create) body["name"] = channel_name;
    if (!channel_webhook.empty()) {
      body["kind"] = "webhook";
      body["config"] = {{"url", channel_webhook}, {"format", channel_format}};
    } else if (!channel_smtp.empty()) {
      body["kind"] = "email";
      // The SMTP password comes from the environment, never the command line.
      json cfg{{"smtp_url", channel_smtp}, {"from", channel_from}, {"to", channel_to}};
      if (std::string u = Env("DATASYNC_SMTP_USER"); !u.empty()) {
        cfg["username"] = u;
        cfg["password"] = Env("DATASYNC_SMTP_PASSWORD");
      }
      body["config"] = cfg;
    } else if (create) {
      throw CliError{"channels add needs --webhook URL or --smtp URL --from A --to B", 2};
    }
    if (!channel_min_severity.empty()) body["min_severity"] = channel_min_severity;
    return body;
  };
  cadd->callback([&] {
    action = [&] {
      json c = Api(g).Call("POST", "/notification-channels", channel_body(true).dump());
      if (g.json) return void(PrintJson(c));
      std::cout << "channel " << Str(c, "name") << " (" << Str(c, "kind") << ") added\n";
    };
  });
  cset->callback([&] {
    action = [&] {
      json c = Api(g).Call("PATCH", "/notification-channels/" + Seg(channel_name), channel_body(false).dump());
      if (g.json) return void(PrintJson(c));
      std::cout << "channel " << Str(c, "name") << " updated\n";
    };
  });
  for (std::string verb : {"enable", "disable", "rm", "test"}) {
    auto* c = channels->add_subcommand(verb, verb == "test" ? "send a test notification now" : verb + " a channel");
    c->add_option("NAME", channel_name, "channel name or id")->required();
    c->callback([&, verb] {
      action = [&, verb] {
        Api api(g);
        std::string target = "/notification-channels/" + Seg(channel_name);
        if (verb == "rm") {
          api.Call("DELETE", target);
          std::cout << "channel " << channel_name << " deleted\n";
        } else if (verb == "test") {
          json r = api.Call("POST", target + "/test", "{}");
          if (!r.value("ok", false)) throw CliError{absl::StrCat("channel ", channel_name, ": ", Str(r, "error"))};
          std::cout << "test notification sent through " << channel_name << "\n";
        } else {
          api.Call("PATCH", target, json{{"enabled", verb == "enable"}}.dump());
          std::cout << "channel " << channel_name << " " << verb << "d\n";
        }
      };
    });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (action) action();
  } catch (const CliError& e) {
    std::cerr << "datasync: " << EscapeForTerminal(e.message) << "\n";
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "datasync: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace ds
