#include "cli/drill.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/cli_support.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/json.h"
#include "http/http_client.h"
#include "http/http_types.h"
#include "platform/directory.h"
#include "platform/process.h"
#include "storage/storage.h"

namespace ds {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct DrillError {
  std::string message;
};

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Starts `argv` with its stderr appended to `log`. Throws DrillError when it cannot (a missing
// binary: "start <path>: No such file or directory").
platform::ChildProcess StartChild(const std::vector<std::string>& argv, const std::string& log) {
  absl::StatusOr<platform::ChildProcess> child = platform::ChildProcess::Start(argv, log);
  if (!child.ok()) throw DrillError{std::string(child.status().message())};
  return *std::move(child);
}

// A child process with its stdout (first lines) readable and stderr to a log file; killed and
// reaped when destroyed.
class Child {
 public:
  // How long Stop waits for the child to end after asking, before it kills it.
  static constexpr std::chrono::seconds kStopGrace{30};

  Child(const std::vector<std::string>& argv, const std::string& log)
      : process_(StartChild(argv, log)) {}
  // Reads stdout lines until one contains `marker`; returns the text after it.
  std::string WaitFor(const std::string& marker) {
    for (;;) {
      absl::StatusOr<std::optional<std::string>> line = process_.ReadLine();
      if (!line.ok()) throw DrillError{std::string(line.status().message())};
      if (!line->has_value()) break;
      std::string& s = **line;
      size_t at = s.find(marker);
      if (at != std::string::npos) {
        s = s.substr(at + marker.size());
        while (!s.empty() && s.back() == '\r') s.pop_back();
        return s;
      }
    }
    throw DrillError{absl::StrCat("child exited before printing '", marker, "'")};
  }
  // Asks the child to end (SIGTERM); kills it when it has not after kStopGrace.
  void Stop() { (void)process_.Stop(kStopGrace); }  // how it ended changes no figure

 private:
  platform::ChildProcess process_;
};

class Admin {
 public:
  Admin(const std::string& url, const std::string& token, http::ClientOptions trust = {})
      : client_(url, std::move(trust)) {
    client_.SetDefaultHeader("Authorization", "Bearer " + token);
  }
  json Call(const std::string& method, const std::string& target, const std::string& body = "") {
    auto r = client_.Do(method, "/api/v1/admin" + target, body);
    if (!r.ok()) throw DrillError{std::string(r.status().message())};
    absl::Status st = http::StatusFromResponse(*r);
    if (!st.ok()) throw DrillError{absl::StrCat(method, " ", target, ": ", st.message())};
    if (r->body.empty()) return json::object();
    absl::StatusOr<json> j = ParseJson(r->body);
    if (!j.ok()) throw DrillError{absl::StrCat(method, " ", target, ": ", j.status().message())};
    return *std::move(j);
  }
  bool Ready() {
    auto r = client_.Do("GET", "/readyz");
    return r.ok() && r->status == 200;
  }

 private:
  http::Client client_;
};

using cli::Seg;

// All index rows of a job: path → sha256.
std::map<std::string, std::string> Rows(Admin& api, const std::string& runner, const std::string& job) {
  std::map<std::string, std::string> out;
  std::string after;
  for (;;) {
    json page = api.Call("GET", absl::StrCat("/runners/", Seg(runner), "/jobs/", Seg(job), "/files?limit=10000",
                                             after.empty() ? "" : "&after=" + Seg(after)));
    for (const auto& f : page["files"]) out[f["path"].get<std::string>()] = f["sha256"].get<std::string>();
    if (!page.contains("next_after")) break;
    after = page["next_after"].get<std::string>();
  }
  return out;
}

template <typename Pred>
void WaitUntil(const std::string& what, double timeout_s, Pred pred) {
  auto t0 = Clock::now();
  while (!pred()) {
    if (Since(t0) > timeout_s) throw DrillError{absl::StrCat("timed out waiting for ", what)};
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string FreeLocalPort() {
  // Bind-free guess from a random high port; the server reports the real one when given 0, but
  // a restart needs a fixed one: pick once and reuse.
  std::mt19937 rng(std::random_device{}());
  return std::to_string(20000 + rng() % 30000);
}

struct Step {
  std::string name;
  double seconds;
  std::string note;
};

void PrintSteps(const std::vector<Step>& steps, bool as_json, json extra) {
  if (as_json) {
    json s = json::array();
    for (const auto& st : steps) s.push_back({{"step", st.name}, {"seconds", st.seconds}, {"note", st.note}});
    extra["steps"] = s;
    std::cout << extra.dump(2) << "\n";
    return;
  }
  for (const auto& st : steps) {
    std::printf("  %-34s %8.2f s  %s\n", st.name.c_str(), st.seconds, st.note.c_str());
  }
}

void WriteSample(const fs::path& dir, int n, const std::string& tag) {
  fs::create_directories(dir);
  for (int i = 0; i < n; ++i) {
    std::ofstream(dir / absl::StrCat(tag, "_", i, ".dat"), std::ios::binary) << RandomBytes(4096);
    auto past = fs::file_time_type::clock::now() - std::chrono::minutes(5);
    fs::last_write_time(dir / absl::StrCat(tag, "_", i, ".dat"), past);
  }
}

struct Scratch {
  fs::path dir;
  bool keep;
  ~Scratch() {
    std::error_code ec;
    if (!keep) fs::remove_all(dir, ec);
  }
};

fs::path MakeScratch() {
  absl::StatusOr<fs::path> dir = platform::MakeTempDirectory("datasync-drill-");
  if (!dir.ok()) throw DrillError{"cannot create a scratch directory"};
  return *std::move(dir);
}

// Starts a scratch server; returns its URL and admin token.
std::pair<std::string, std::string> StartServer(std::unique_ptr<Child>& child, const DrillOptions& o,
                                                const fs::path& dir, const std::string& storage,
                                                const std::string& listen) {
  std::vector<std::string> argv{o.bin_dir + "/datasync-server", "--listen", listen,
                                "--index", "sqlite:" + (dir / "state.db").string(),
                                "--storage", storage, "--data", (dir / "data").string(),
                                "--heartbeat-interval", "1s", "--log-level", "warn",
                                "--insecure-http"};  // a scratch lab on loopback only
  if (!o.storage_key_file.empty()) argv.insert(argv.end(), {"--storage-key-file", o.storage_key_file});
  child = std::make_unique<Child>(argv, (dir / "server.log").string());
  std::string url = child->WaitFor("listening on ");
  auto token = ReadFileToString(dir / "data" / "admin.token", 4096);
  if (!token.ok()) throw DrillError{"scratch server wrote no admin token"};
  std::string t = *token;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return {url, t};
}

std::unique_ptr<Child> StartAgent(const DrillOptions& o, const fs::path& dir, const std::string& url,
                                  const std::string& name) {
  return std::make_unique<Child>(
      std::vector<std::string>{o.bin_dir + "/datasync-agent", "--server", url, "--state-dir",
                               (dir / ("agent-" + name)).string(), "--name", name, "--enroll-poll", "200ms",
                               "--heartbeat-interval", "1s", "--log-level", "warn", "--allow-http",
                               "--allow-source", dir.string()},
      (dir / ("agent-" + name + ".log")).string());
}

json Runner(Admin& api, const std::string& name) {
  json all = api.Call("GET", "/runners");  // (ranging over a temporary's member would dangle)
  for (const auto& r : all["runners"]) {
    if (r["name"] == name) return r;
  }
  return json();
}

void EnrollScratchAgent(Admin& api, const std::string& name) {
  WaitUntil("the scratch agent's registration", 30, [&] {
    json r = Runner(api, name);
    return !r.is_null() && r["status"] == "pending" && !r["hostname"].get<std::string>().empty();
  });
  api.Call("POST", "/runners/" + name + "/approve");
  WaitUntil("the scratch agent online", 30, [&] {
    json r = Runner(api, name);
    return !r.is_null() && r["online"].get<bool>();
  });
}

json SyncWait(Admin& api, const std::string& runner, const std::string& job) {
  json q = api.Call("POST", "/runners/" + runner + "/jobs/" + job + "/sync");
  std::string run = q["run_id"];
  json r;
  WaitUntil("the sync round trip", 120, [&] {
    try {
      r = api.Call("GET", "/runs/" + run);
      return r["state"] != "running";
    } catch (const DrillError&) {
      return false;
    }
  });
  return r;
}

}  // namespace

int DrillIndexLoss(const DrillOptions& o) {
  try {
    Admin live(o.server, o.token, o.trust);
    json status = live.Call("GET", "/status");
    std::string storage = status["storage"];
    json jobs = live.Call("GET", "/jobs")["jobs"];
    std::map<std::string, std::map<std::string, std::string>> before;
    size_t rows_before = 0;
    for (const auto& j : jobs) {
      auto rows = Rows(live, j["runner"], j["name"]);
      rows_before += rows.size();
      before[j["runner"].get<std::string>() + "/" + j["name"].get<std::string>()] = std::move(rows);
    }
    Scratch scratch{MakeScratch(), o.keep};
    std::vector<Step> steps;
    if (!o.json) {
      std::cout << "drill index-loss: " << jobs.size() << " job(s), " << rows_before << " index rows on "
                << o.server << "; storage " << storage << "\n  scratch: " << scratch.dir.string() << "\n";
    }
    auto total = Clock::now();

    auto t = Clock::now();
    std::unique_ptr<Child> server;
    auto [url, token] = StartServer(server, o, scratch.dir, storage, "127.0.0.1:0");
    Admin api(url, token);
    WaitUntil("scratch server ready", 30, [&] { return api.Ready(); });
    steps.push_back({"fresh index + start-up migrations", Since(t), url});

    t = Clock::now();
    for (auto j : jobs) {
      std::string r = j["runner"], n = j["name"];
      for (const char* k : {"runner", "id", "created_at"}) j.erase(k);
      api.Call("PUT", "/runners/" + Seg(r) + "/jobs/" + Seg(n) + "?create_runner=1", j.dump());
    }
    steps.push_back({"job import", Since(t), absl::StrCat(jobs.size(), " job(s)")});

    t = Clock::now();
    json queued = api.Call("POST", "/reconcile", "{}")["queued"];
    uint64_t files = 0, mismatches = 0;
    for (const auto& q : queued) {
      json r;
      WaitUntil("reconcile", 3600, [&] {
        r = api.Call("GET", "/reconciles/" + q["id"].get<std::string>());
        return r["state"] == "succeeded" || r["state"] == "failed";
      });
      if (r["state"] == "failed") throw DrillError{"reconcile failed: " + r["error"].get<std::string>()};
      files += r["files_seen"].get<uint64_t>();
      mismatches += r["mismatches"].get<uint64_t>();
    }
    double reconcile_s = Since(t);
    steps.push_back({"reconcile all jobs", reconcile_s,
                     absl::StrCat(files, " files, ", reconcile_s > 0 ? static_cast<int64_t>(files / reconcile_s) : 0,
                                  " files/s, ", mismatches, " mismatches")});

    // RPO: index rows the live index had that the rebuilt one lacks (or has with another hash).
    uint64_t lost = 0;
    for (const auto& j : jobs) {
      std::string key = j["runner"].get<std::string>() + "/" + j["name"].get<std::string>();
      auto after = Rows(api, j["runner"], j["name"]);
      for (const auto& [path, sha] : before[key]) {
        auto it = after.find(path);
        if (it == after.end() || it->second != sha) ++lost;
      }
    }

    t = Clock::now();
    std::string agent_name = "drill-" + HexEncode(RandomBytes(3));
    auto agent = StartAgent(o, scratch.dir, url, agent_name);
    EnrollScratchAgent(api, agent_name);
    steps.push_back({"agent reconnect (enroll + approve)", Since(t), agent_name});

    t = Clock::now();
    fs::path src = scratch.dir / "drill-source";
    WriteSample(src, 5, "roundtrip");
    std::string dest = "datasync-drill/" + agent_name;
    api.Call("POST", "/runners/" + agent_name + "/jobs/roundtrip",
             json{{"source", src.string()}, {"dest_prefix", dest}, {"settle_ms", 0}, {"interval_ms", 3600000}}.dump());
    json run = SyncWait(api, agent_name, "roundtrip");
    bool round_ok = run["state"] == "succeeded" && Rows(api, agent_name, "roundtrip").size() == 5;
    steps.push_back({"sync round trip", Since(t), absl::StrCat(run["state"].get<std::string>(), ", ",
                                                              run["files_uploaded"].get<uint64_t>(), " files")});
    double rto = Since(total);
    // Remove the round trip's files from storage the drill can write itself (a directory or
    // share; object storage: left, reported).
    if (absl::StatusOr<StorageUrl> parsed = ParseStorageUrl(storage);
        parsed.ok() && AdvertisedFeatures(*parsed).direct_writes) {
      std::error_code ec;
      fs::remove_all(fs::path(parsed->path) / "datasync-drill", ec);
    }
    agent->Stop();
    server->Stop();
    if (!o.json) {
      std::cout << "steps (RTO per step):\n";
    }
    PrintSteps(steps, o.json, json{{"drill", "index-loss"}, {"rto_s", rto}, {"rpo_files", lost},
                                   {"rows_before", rows_before}, {"round_trip_ok", round_ok}});
    if (!o.json) {
      std::printf("RTO (total) %.2f s; RPO %llu file(s) whose index rows were lost and not recovered (must be 0)\n",
                  rto, static_cast<unsigned long long>(lost));
    }
    return lost == 0 && round_ok ? 0 : 1;
  } catch (const DrillError& e) {
    std::cerr << "datasync drill index-loss: " << e.message << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "datasync drill index-loss: " << e.what() << "\n";
    return 1;
  }
}

int DrillServerDown(const DrillOptions& o) {
  try {
    Scratch scratch{MakeScratch(), o.keep};
    fs::path share = scratch.dir / "share";
    std::string listen = "127.0.0.1:" + FreeLocalPort();
    std::vector<Step> steps;
    std::unique_ptr<Child> server;
    auto [url, token] = StartServer(server, o, scratch.dir, "file://" + share.string(), listen);
    Admin api(url, token);
    WaitUntil("scratch server ready", 30, [&] { return api.Ready(); });
    std::string agent_name = "drill-" + HexEncode(RandomBytes(3));
    auto agent = StartAgent(o, scratch.dir, url, agent_name);
    EnrollScratchAgent(api, agent_name);
    fs::path src = scratch.dir / "drill-source";
    WriteSample(src, 20, "before");
    api.Call("POST", "/runners/" + agent_name + "/jobs/lab",
             json{{"source", src.string()}, {"dest_prefix", "lab"}, {"settle_ms", 0}, {"interval_ms", 2000}}.dump());
    WaitUntil("the first sync", 60, [&] { return Rows(api, agent_name, "lab").size() == 20; });
    if (!o.json) {
      std::cout << "drill server-down: scratch server " << url << ", agent " << agent_name << ", job every 2s\n"
                << "  stopping the server for " << o.down_seconds << " s while new measurements arrive\n";
    }

    auto t = Clock::now();
    server->Stop();
    int written = 0;
    while (Since(t) < o.down_seconds) {
      WriteSample(src / "while-down", 1, absl::StrCat("m", written++));
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    size_t landed_offline = 0;
    for (auto& e : fs::recursive_directory_iterator(share / "lab" / "while-down", fs::directory_options::skip_permission_denied)) {
      landed_offline += e.is_regular_file() && e.path().filename().string().rfind(".dstmp-", 0) != 0;
    }
    steps.push_back({"server down", Since(t), absl::StrCat(written, " files written, ", landed_offline,
                                                          " already in storage (offline sync)")});

    auto back = Clock::now();
    auto restarted = StartServer(server, o, scratch.dir, "file://" + share.string(), listen);
    Admin api2(restarted.first, restarted.second);
    steps.push_back({"server restart (index migrations)", Since(back), ""});
    auto hb_before = Runner(api2, agent_name)["last_heartbeat_at"].get<std::string>();
    WaitUntil("the agent's reconnect", 180, [&] {
      return Runner(api2, agent_name)["last_heartbeat_at"].get<std::string>() != hb_before;
    });
    double reconnect = Since(back);
    steps.push_back({"agent reconnect", reconnect, "first heartbeat after the server returned"});

    // Drift: storage under the job's prefix vs index rows, once the journal has been replayed.
    auto drift = [&]() {
      std::map<std::string, bool> stored;
      for (auto& e : fs::recursive_directory_iterator(share / "lab")) {
        if (!e.is_regular_file() || e.path().filename().string().rfind(".dstmp-", 0) == 0) continue;
        stored[fs::relative(e.path(), share / "lab").string()] = true;
      }
      auto rows = Rows(api2, agent_name, "lab");
      size_t d = 0;
      for (const auto& [p, _] : stored) d += rows.count(p) == 0;
      for (const auto& [p, _] : rows) d += stored.count(p) == 0;
      return d;
    };
    auto catchup = Clock::now();
    size_t d = 0;
    try {
      WaitUntil("zero drift", 120, [&] { return (d = drift()) == 0 && Rows(api2, agent_name, "lab").size() == 20 + static_cast<size_t>(written); });
    } catch (const DrillError&) {
    }
    steps.push_back({"index catch-up (journal replay)", Since(catchup), absl::StrCat("drift ", d, " file(s)")});
    agent->Stop();
    server->Stop();
    PrintSteps(steps, o.json, json{{"drill", "server-down"}, {"down_s", o.down_seconds},
                                   {"reconnect_s", reconnect}, {"drift_files", d}, {"files_written", written}});
    if (!o.json) {
      std::printf("reconnect %.2f s after the server returned (bound: 120 s); drift after recovery: %zu file(s) (must be 0)\n",
                  reconnect, d);
    }
    return d == 0 && reconnect <= 120 ? 0 : 1;
  } catch (const DrillError& e) {
    std::cerr << "datasync drill server-down: " << e.message << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "datasync drill server-down: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ds
