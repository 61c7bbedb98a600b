#include "agent/agent.h"

#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/agent_state.h"
#include "agent/disk_sampler.h"
#include "agent/job_run.h"
#include "agent/journal.h"
#include "agent/observability.h"
#include "agent/replay.h"
#include "agent/server_api.h"
#include "agent/temp_cleanup.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/periodic_worker.h"
#include "common/time_util.h"
#include "http/http_client.h"
#include "http/http_types.h"
#include "platform/system.h"
#include "protocol/messages.h"

namespace ds {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string HostName() { return platform::GetHostInfo().hostname; }

std::string OsDescription() {
  const platform::HostInfo h = platform::GetHostInfo();
  if (h.os_name.empty()) return "unknown";
  return absl::StrCat(h.os_name, " ", h.os_version, " ", h.arch);
}

// Capped exponential backoff with "equal jitter": the n-th retry waits U(c/2, c), c = min(cap,
// base·2^n) — never less than half the ceiling, so a fleet does not hammer a returning server.
milliseconds Backoff(int attempt, milliseconds base, milliseconds cap) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  int64_t ceiling = std::min<int64_t>(cap.count(), base.count() << std::min(attempt, 20));
  std::uniform_int_distribution<int64_t> d(ceiling / 2, ceiling);
  return milliseconds(d(rng));
}

// Sleeps up to `d`, waking early when `stop` is set.
void SleepFor(milliseconds d, const std::atomic<bool>& stop) {
  auto until = Clock::now() + d;
  while (!stop.load() && Clock::now() < until) {
    std::this_thread::sleep_for(std::min<Clock::duration>(milliseconds(100), until - Clock::now()));
  }
}

// One run's stop flag: set when the agent stops or when the run's job is deleted (Cancel), so
// that a deleted job's scan and uploads stop at the next file. The agent's stop flag is set by a
// signal thread that cannot be told about runs; a small thread carries it over within 50 ms.
class RunCancel {
 public:
  explicit RunCancel(const std::atomic<bool>& agent_stop)
      : watcher_([this, &agent_stop] {
          while (!done_.load() && !flag_.load()) {
            if (agent_stop.load()) flag_ = true;
            std::this_thread::sleep_for(milliseconds(50));
          }
        }) {}
  ~RunCancel() {
    done_ = true;
    watcher_.join();
  }
  RunCancel(const RunCancel&) = delete;
  RunCancel& operator=(const RunCancel&) = delete;

  void Cancel() { flag_ = true; }
  const std::atomic<bool>* flag() const { return &flag_; }

 private:
  std::atomic<bool> flag_{false};
  std::atomic<bool> done_{false};
  std::thread watcher_;
};

// How often the job folders' free space is sampled (heartbeats send the last sample).
constexpr milliseconds kDiskSampleInterval{30'000};
// How often the agent tries again to remove its interrupted uploads' temp files while storage
// cannot be opened.
constexpr milliseconds kTempCleanupRetry{10'000};

class Agent {
 public:
  Agent(const AgentConfig& config, const std::atomic<bool>& stop)
      : config_(config),
        stop_(stop),
        rate_limiter_(config.max_bytes_per_second > 0
                          ? std::make_unique<RateLimiter>(config.max_bytes_per_second)
                          : nullptr) {}
  ~Agent() { disk_sampler_->Stop(); }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  absl::Status Run() {
    DS_RETURN_IF_ERROR(observability_.Start());
    absl::Status result = RunEnrolled();
    observability_.Stop();
    return result;
  }

 private:
  // Ships one batch of the log buffer; returns the wait before the next: none while a full batch
  // went out (more wait), the interval, or a capped back-off while the server refuses.
  milliseconds ShipLogs() {
    auto batch = observability_.log_buffer().Peek(protocol::kMaxLogBatch / 2);
    if (!batch.ok() || batch->empty()) return config_.log_ship_interval;
    protocol::LogBatch body{*batch};
    auto resp = ship_client_->Do("POST", "/api/v1/agent/logs", protocol::Encode(body));
    absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
    if (!st.ok()) {
      // Said once per outage: each line would itself wait in the buffer.
      if (ship_failures_ == 0) spdlog::warn("cannot ship logs yet: {}", st.message());
      return std::min(milliseconds(30'000),
                      Backoff(ship_failures_++, config_.log_ship_interval, milliseconds(30'000)));
    }
    (void)observability_.log_buffer().Remove(batch->back().seq);
    observability_.metrics().Add("datasync_agent_log_records_shipped_total", {}, static_cast<double>(batch->size()));
    if (ship_failures_ > 0) spdlog::info("shipping logs again ({} waiting)", observability_.log_buffer().Size());
    ship_failures_ = 0;
    return batch->size() == protocol::kMaxLogBatch / 2 ? milliseconds(0) : config_.log_ship_interval;
  }

  absl::Status RunEnrolled() {
    DS_RETURN_IF_ERROR(Enroll());
    // The URL may come from the state file (enrolled earlier): refused here, not at every call.
    DS_RETURN_IF_ERROR(http::CheckServerUrl(state_.server_url, config_.allow_http, "pass --allow-http"));
    DS_ASSIGN_OR_RETURN(journal_, OpenJournal((std::filesystem::path(config_.state_dir) / "agent.db").string()));
    client_ = NewClient(std::chrono::milliseconds(0));
    if (sources_.roots().empty()) {
      spdlog::warn("no --allow-source folder: every job this runner is given fails unread");
    } else {
      spdlog::info("jobs may read under: {}", absl::StrJoin(sources_.roots(), ", "));
    }
    // Jobs known from last time, so the agent syncs even if the server is down at start.
    int64_t version = -1;
    if (auto cached = journal_->LoadJobs(&version); cached.ok()) {
      {
        MutexLock lock(&mu_);  // no other thread yet: for the analysis
        storage_url_ = cached->first;
      }
      ApplyJobs(version, cached->second, /*save=*/false);
      spdlog::info("loaded {} cached job definition(s) (v{})", cached->second.size(), version);
    }

    heartbeat_client_ = NewClient(milliseconds(30'000));
    ship_client_ = NewClient(milliseconds(30'000));
    auto heartbeats = PeriodicWorker::Paced({.name = "heartbeat", .call_at_start = true},
                                            [this] { return HeartbeatAndPace(); });
    auto shipper = PeriodicWorker::Paced({.name = "log-shipper", .call_at_start = true},
                                         [this] { return ShipLogs(); });
    std::unique_ptr<PeriodicWorker> poller;
    if (!config_.once) {
      poll_client_ = NewClient(config_.long_poll + milliseconds(15'000));
      poller = PeriodicWorker::Paced({.name = "commands", .call_at_start = true},
                                     [this] { return PollCommands(); });
    }
    absl::Status result = MainLoop();
    heartbeats->Stop();
    shipper->Stop();
    if (poller) poller->Stop();
    MutexLock lock(&mu_);  // the threads are gone: for the analysis
    if (result.ok() && !fatal_.ok()) result = fatal_;
    return result;
  }

  // How every client of the server verifies it (AgentConfig's ca_file, pinned_key, allow_http).
  http::ClientOptions ServerTrust() const {
    http::ClientOptions copts;
    copts.ca_file = config_.ca_file;
    copts.pinned_public_key = config_.pinned_key;
    copts.require_https = !config_.allow_http;
    return copts;
  }

  std::unique_ptr<http::Client> NewClient(std::chrono::milliseconds timeout) {
    http::ClientOptions copts = ServerTrust();
    copts.cancel = &stop_;
    copts.user_agent = absl::StrCat("datasync-agent/", DATASYNC_VERSION);
    if (timeout.count() > 0) copts.timeout = timeout;
    copts.connect_timeout = std::chrono::milliseconds(5'000);
    // The key is read at every request: a key rotation reaches every client at once.
    copts.bearer = [this] {
      MutexLock lock(&key_mu_);
      return state_.api_key;
    };
    return std::make_unique<http::Client>(state_.server_url, copts);
  }

  // Loads the state, or registers and waits for an operator's approval.
  absl::Status Enroll() {
    if (config_.re_enroll) DS_RETURN_IF_ERROR(MoveAgentStateAside(config_.state_dir));
    auto loaded = LoadAgentState(config_.state_dir);
    if (loaded.ok()) {
      state_ = *loaded;
      if (state_.server_url != config_.server_url && !config_.server_url.empty()) {
        spdlog::info("server URL changed from {} to {}", state_.server_url, config_.server_url);
        state_.server_url = config_.server_url;
        DS_RETURN_IF_ERROR(SaveAgentState(config_.state_dir, state_));
      }
      if (state_.enrolled()) {
        spdlog::info("runner '{}' (id {}) enrolled with {}", state_.name, state_.runner_id, state_.server_url);
        return absl::OkStatus();
      }
    } else if (!absl::IsNotFound(loaded.status())) {
      return loaded.status();
    }
    if (config_.server_url.empty()) return absl::InvalidArgumentError("--server is required to enroll");
    state_.server_url = config_.server_url;
    if (state_.name.empty()) state_.name = config_.name.empty() ? HostName() : config_.name;

    http::ClientOptions copts = ServerTrust();
    copts.cancel = &stop_;
    http::Client client(state_.server_url, copts);
    int attempt = 0;
    while (!stop_.load()) {
      if (state_.enrollment_id.empty()) {
        protocol::RegisterRequest reg{state_.name, HostName(), OsDescription(), DATASYNC_VERSION, ""};
        if (auto id = ReadFileToString("/etc/machine-id", 4096); id.ok()) {
          reg.machine_id = Sha256Hex(*id).substr(0, 16);  // a stable id, not the secret itself
        }
        auto resp = client.Do("POST", "/api/v1/agent/register", protocol::Encode(reg));
        absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
        if (!st.ok()) {
          if (!absl::IsUnavailable(st) && !absl::IsDeadlineExceeded(st)) {
            return absl::Status(st.code(), absl::StrCat("registration refused: ", st.message()));
          }
          spdlog::warn("server unreachable for registration ({}); retrying", st.message());
          SleepFor(Backoff(attempt++, milliseconds(1000), milliseconds(60'000)), stop_);
          continue;
        }
        DS_ASSIGN_OR_RETURN(auto reg_resp, protocol::Decode<protocol::RegisterResponse>(resp->body));
        state_.enrollment_id = reg_resp.enrollment_id;
        state_.enrollment_secret = reg_resp.enrollment_secret;
        DS_RETURN_IF_ERROR(SaveAgentState(config_.state_dir, state_));
        spdlog::info("registered as '{}' (enrollment {}); waiting for an operator to approve it "
                     "(datasync runners approve {})", state_.name, state_.enrollment_id, state_.name);
      }
      auto resp = client.Do("GET", "/api/v1/agent/enrollment/" + state_.enrollment_id, "",
                            {{"Authorization", "Bearer " + state_.enrollment_secret}});
      absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
      if (st.ok()) {
        DS_ASSIGN_OR_RETURN(auto es, protocol::Decode<protocol::EnrollmentStatus>(resp->body));
        if (!es.api_key.empty()) {
          state_.api_key = es.api_key;
          state_.runner_id = es.runner_id;
          state_.enrollment_secret.clear();
          DS_RETURN_IF_ERROR(SaveAgentState(config_.state_dir, state_));
          spdlog::info("approved: runner '{}' (id {}) now holds its API key", state_.name, state_.runner_id);
          return absl::OkStatus();
        }
        attempt = 0;
        SleepFor(config_.enroll_poll, stop_);
        continue;
      }
      if (absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st)) {
        SleepFor(Backoff(attempt++, milliseconds(1000), milliseconds(60'000)), stop_);
        continue;
      }
      if (absl::IsNotFound(st)) {
        // The server's index no longer knows the request (restored from an older backup, or
        // rebuilt after a loss): register again, as an enrolled runner whose key is unknown does.
        spdlog::warn("enrollment {} is unknown to the server (its index was restored or rebuilt?); "
                     "registering again", state_.enrollment_id);
        state_.enrollment_id.clear();
        state_.enrollment_secret.clear();
        DS_RETURN_IF_ERROR(SaveAgentState(config_.state_dir, state_));
        SleepFor(Backoff(attempt++, milliseconds(1000), milliseconds(60'000)), stop_);
        continue;
      }
      return absl::Status(st.code(), absl::StrCat("enrollment failed: ", st.message(),
                                                  " (start with --re-enroll to register again)"));
    }
    return absl::CancelledError("stopped before enrollment completed");
  }

  // Runs jobs on schedule and on command, and replays the journal whenever the server answers,
  // until stopped. Heartbeats run on their own thread so a long run never silences the runner.
  absl::Status MainLoop() {
    while (!stop_.load()) {
      {
        MutexLock lock(&mu_);
        if (!fatal_.ok()) return fatal_;
      }
      RemoveTempsIfDue();
      if (server_ok_.load() && replay_needed_.exchange(false)) {
        bool temps_kept = false;
        std::unique_ptr<AgentServer> server = HttpAgentServer(client_.get(), &stop_);
        absl::Status st =
            ReplayJournal(server.get(), journal_.get(), StorageUrl(), &stop_, &temps_kept);
        if (!st.ok()) {
          spdlog::warn("journal replay paused: {}", st.message());
          replay_needed_ = true;
        }
        if (temps_kept) {
          temp_cleanup_needed_ = true;
          temp_cleanup_after_ = Clock::now() + kTempCleanupRetry;
        }
      }
      if (HaveJobs()) RunDueWork();
      if (config_.once && HaveJobs() && !replay_needed_.load()) return absl::OkStatus();
      MutexLock lock(&mu_);
      // Bounded: the stop flag is set from a signal thread that cannot notify us.
      auto wake = std::min(NextDue(), Clock::now() + milliseconds(500));
      while (!stop_.load() && queue_.empty() && fatal_.ok() && !wake_ &&
             cv_.WaitUntil(&mu_, wake)) {
      }
      wake_ = false;
    }
    return absl::OkStatus();
  }

  // Temp files of this agent's interrupted uploads: removed at start and, while storage cannot be
  // opened (then, or when a replay could not remove them), tried again every kTempCleanupRetry.
  // Main loop thread only; runs never overlap it (they run on this thread too).
  void RemoveTempsIfDue() {
    if (!temp_cleanup_needed_ || Clock::now() < temp_cleanup_after_) return;
    const std::string url = StorageUrl();
    if (url.empty()) return;  // never told a storage: nothing was uploaded either
    if (RemoveInterruptedTemps(journal_.get(), url).ok()) {
      temp_cleanup_needed_ = false;
    } else {
      temp_cleanup_after_ = Clock::now() + kTempCleanupRetry;
    }
  }

  bool HaveJobs() {
    MutexLock lock(&mu_);
    return jobs_version_ >= 0;
  }

  std::string StorageUrl() {
    MutexLock lock(&mu_);
    return storage_url_;
  }

  milliseconds HeartbeatInterval() {
    if (config_.heartbeat_interval.count() > 0) return config_.heartbeat_interval;
    milliseconds server = server_interval_.load();
    return server.count() > 0 ? server : milliseconds(60'000);
  }

  // One heartbeat; returns the wait before the next: the interval, or after an outage a capped
  // exponential back-off with jitter (at most 60 s between attempts, so within 2 minutes of the
  // server's return). A revoked key ends the agent (fatal_) and the heartbeats.
  milliseconds HeartbeatAndPace() {
    absl::Status st = Heartbeat(heartbeat_client_.get());
    if (absl::IsUnauthenticated(st)) {
      MutexLock lock(&mu_);
      fatal_ = absl::UnauthenticatedError(absl::StrCat(
          "the server no longer accepts this runner's key (", st.message(),
          "); an operator revoked or replaced it. Start with --re-enroll to enroll again"));
      cv_.SignalAll();
      return std::chrono::hours(24);  // not again: the main loop returns fatal_ and stops us
    }
    milliseconds next;
    if (st.ok()) {
      if (heartbeat_failures_ > 0 || first_heartbeat_) {
        if (heartbeat_failures_ > 0) {
          spdlog::info("server reachable again after {} failed heartbeat(s)", heartbeat_failures_);
        }
        replay_needed_ = true;
      }
      heartbeat_failures_ = 0;
      first_heartbeat_ = false;
      server_ok_ = true;
      next = HeartbeatInterval();
    } else {
      observability_.metrics().Add("datasync_agent_heartbeat_failures_total", {});
      if (server_ok_.exchange(false) || heartbeat_failures_ == 0) {
        spdlog::warn("heartbeat failed: {}", st.message());
      }
      next = std::min(HeartbeatInterval(),
                      Backoff(heartbeat_failures_++, milliseconds(1'000), milliseconds(60'000)));
    }
    cv_.SignalAll();  // jobs, commands or reachability may have changed
    return next;
  }

  absl::Status Heartbeat(http::Client* client) {
    protocol::HeartbeatRequest hb;
    hb.agent_version = DATASYNC_VERSION;
    {
      MutexLock lock(&mu_);
      hb.state = current_run_.empty() ? "idle" : "syncing";
      hb.current_run = current_run_;
      hb.jobs_version = jobs_version_;
      if (!current_run_.empty()) {
        protocol::RunProgress p;
        p.run_id = current_run_;
        p.job = current_job_;
        p.started_at_ms = current_started_ms_;
        p.files_total = counters_.files_total;
        p.files_done = counters_.files_done;
        p.bytes_total = counters_.bytes_total;
        p.bytes_done = counters_.bytes_done;
        hb.backlog_files = static_cast<int64_t>(p.files_total - std::min(p.files_total, p.files_done));
        hb.backlog_bytes = static_cast<int64_t>(p.bytes_total - std::min(p.bytes_total, p.bytes_done));
        hb.progress = p;
      } else {
        hb.backlog_files = hb.backlog_bytes = 0;
      }
    }
    hb.disk_free = disk_sampler_->Last();  // sampled off this thread: a hung share cannot stall it
    hb.agent_time_ms = SystemClock()->NowUnixMs();
    auto resp = client->Do("POST", "/api/v1/agent/heartbeat", protocol::Encode(hb));
    absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
    if (!st.ok()) return st;
    DS_ASSIGN_OR_RETURN(auto out, protocol::Decode<protocol::HeartbeatResponse>(resp->body));
    server_interval_ = milliseconds(out.interval_ms);
    {
      MutexLock lock(&mu_);
      storage_url_ = out.storage_url;
    }
    if (out.jobs) ApplyJobs(out.jobs_version, *out.jobs, /*save=*/true);
    Enqueue(out.commands);
    if (!out.new_api_key.empty()) AdoptRotatedKey(out.new_api_key);
    return absl::OkStatus();
  }

  // An operator rotated this runner's key: keep the new one on disk first, then use it. The
  // server retires the old key at the first request made with the new one (accepting it only for
  // requests in flight, --retired-key-grace; a later use quarantines the runner). A new key is
  // handed out once: if this answer is lost the operator rotates again.
  void AdoptRotatedKey(const std::string& key) {
    AgentState next;
    {
      MutexLock lock(&key_mu_);
      next = state_;
    }
    next.api_key = key;
    if (absl::Status st = SaveAgentState(config_.state_dir, next); !st.ok()) {
      spdlog::error("cannot store the rotated API key ({}); keeping the old one", st.message());
      return;
    }
    {
      MutexLock lock(&key_mu_);
      state_.api_key = key;
    }
    spdlog::info("API key rotated by an operator; the new key is stored and in use");
  }

  // Replaces the job definitions; jobs that are new run right away, known ones keep their schedule.
  void ApplyJobs(int64_t version, const std::vector<protocol::JobSpec>& jobs, bool save) {
    if (save) {
      if (absl::Status st = journal_->SaveJobs(version, StorageUrl(), jobs); !st.ok()) {
        spdlog::warn("caching job definitions: {}", st.message());
      }
    }
    MutexLock lock(&mu_);
    std::map<std::string, Clock::time_point> due;
    for (const auto& j : jobs) {
      auto it = next_due_.find(j.name);
      due[j.name] = it != next_due_.end() ? it->second : Clock::now();
    }
    jobs_.clear();
    DiskSampler::Folders folders;
    for (const auto& j : jobs) {
      jobs_[j.name] = j;
      folders.emplace_back(j.name, j.source);
    }
    const auto running = jobs_.find(current_job_);
    if (run_cancel_ != nullptr && (running == jobs_.end() || running->second.id != current_job_id_)) {
      spdlog::warn("run={} job={}: the job was deleted; stopping its run", current_run_, current_job_);
      run_cancel_->Cancel();
    }
    disk_sampler_->SetFolders(std::move(folders));
    next_due_ = std::move(due);
    jobs_version_ = version;
    spdlog::info("job definitions v{}: {} job(s)", jobs_version_, jobs_.size());
  }

  // Fetches job definitions now (a command named a job this agent has not heard of yet).
  absl::Status RefreshJobs() {
    auto resp = client_->Do("GET", "/api/v1/agent/jobs");
    absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
    if (!st.ok()) return st;
    try {
      DS_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(resp->body));
      if (j.contains("storage_url")) {
        MutexLock lock(&mu_);
        storage_url_ = j["storage_url"].get<std::string>();
      }
      ApplyJobs(j.at("jobs_version").get<int64_t>(), j.at("jobs").get<std::vector<protocol::JobSpec>>(), true);
    } catch (const nlohmann::json::exception& e) {
      return absl::InternalError(absl::StrCat("bad jobs answer: ", e.what()));
    }
    return absl::OkStatus();
  }

  void Enqueue(const std::vector<protocol::Command>& commands) {
    if (commands.empty()) return;
    {
      MutexLock lock(&mu_);
      for (const auto& c : commands) {
        spdlog::info("command {}: {} {} run={}", c.id, c.type, c.job, c.run_id);
        queue_.push_back(c);
      }
    }
    cv_.SignalAll();
  }

  // Long-polls the server for commands so "sync now" arrives within about a second; returns the
  // wait before the next poll: none after an answer, a capped back-off after a failure.
  milliseconds PollCommands() {
    const std::string target =
        absl::StrCat("/api/v1/agent/commands?wait=", config_.long_poll.count(), "ms");
    auto resp = poll_client_->Do("GET", target);
    absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
    if (!st.ok()) return Backoff(poll_failures_++, milliseconds(1000), milliseconds(30'000));
    auto cmds = protocol::Decode<protocol::CommandsResponse>(resp->body);
    if (cmds.ok()) Enqueue(cmds->commands);
    poll_failures_ = 0;
    return milliseconds(0);
  }

  Clock::time_point NextDue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto t = Clock::now() + std::chrono::hours(1);
    for (const auto& [name, due] : next_due_) {
      auto it = jobs_.find(name);
      if (it != jobs_.end() && it->second.enabled) t = std::min(t, due);
    }
    return t;
  }

  // Runs queued commands first, then jobs whose interval has come round.
  void RunDueWork() {
    std::set<int64_t> refreshed;  // commands whose job we already refreshed for
    for (;;) {
      if (stop_.load()) return;
      std::optional<protocol::JobSpec> job;
      std::string run_id, trigger;
      bool need_refresh = false;
      {
        MutexLock lock(&mu_);
        while (!queue_.empty() && !job) {
          protocol::Command c = queue_.front();
          queue_.pop_front();
          auto it = jobs_.find(c.job);
          if (c.type == "sync" && it == jobs_.end() && !refreshed.count(c.id)) {
            // Our definitions may be older than the command: refresh once, then look again.
            refreshed.insert(c.id);
            queue_.push_front(c);
            need_refresh = true;
            break;
          }
          if (c.type != "sync" || it == jobs_.end()) {
            spdlog::warn("command {} ignored: {} for unknown job '{}'", c.id, c.type, c.job);
            continue;
          }
          job = it->second;
          run_id = IsValidUuid(c.run_id) ? c.run_id : NewUuid();
          trigger = "command";
        }
        if (!job) {
          auto now = Clock::now();
          for (auto& [name, due] : next_due_) {
            auto it = jobs_.find(name);
            if (it == jobs_.end() || !it->second.enabled || due > now) continue;
            job = it->second;
            run_id = NewUuid();
            trigger = first_round_.count(name) ? "schedule" : "startup";
            break;
          }
        }
      }
      if (need_refresh) {
        if (absl::Status st = RefreshJobs(); !st.ok()) spdlog::warn("refreshing jobs failed: {}", st.message());
        continue;
      }
      if (!job) return;
      RunOne(*job, run_id, trigger);
    }
  }

  void RunOne(const protocol::JobSpec& job, const std::string& run_id, const std::string& trigger) {
    {
      MutexLock lock(&mu_);
      current_run_ = run_id;
      current_job_ = job.name;
      current_job_id_ = job.id;
      current_started_ms_ = SystemClock()->NowUnixMs();
      counters_.files_total = counters_.files_done = counters_.bytes_total = counters_.bytes_done = 0;
    }
    JobRunOptions o;
    o.journal = journal_.get();
    o.server_known_down = !server_ok_.load();
    o.state_dir = config_.state_dir;
    o.storage_url = StorageUrl();
    o.run_id = run_id;
    o.trigger = trigger;
    o.upload_threads = config_.upload_threads;
    o.rate_limiter = rate_limiter_.get();
    o.block_parallelism = config_.block_parallelism;
    o.verify = config_.verify_uploads;
    o.copy_while_scanning = config_.copy_while_scanning;
    o.delta_copies_held = config_.delta_copies_held;
    o.block_size = config_.block_size;
    RunCancel cancel(stop_);
    o.stop = cancel.flag();
    std::unique_ptr<AgentServer> server = HttpAgentServer(client_.get(), o.stop);
    AgentServerFactory connect = [this, stop = o.stop] {
      return HttpAgentServer(NewClient(milliseconds(60'000)), stop);
    };
    o.counters = &counters_;
    o.sources = &sources_;
    {
      MutexLock lock(&mu_);
      run_cancel_ = &cancel;
    }
    auto outcome = JobRun(server.get(), std::move(connect), job, o).Run();
    {
      MutexLock lock(&mu_);
      run_cancel_ = nullptr;
    }
    if (outcome.ok()) {
      observability_.metrics().Add("datasync_agent_runs_total", {{"state", outcome->state}});
      observability_.metrics().Add("datasync_agent_files_uploaded_total", {}, static_cast<double>(outcome->uploaded));
      observability_.metrics().Add("datasync_agent_bytes_uploaded_total", {}, static_cast<double>(outcome->bytes_uploaded));
    }
    if (!outcome.ok()) spdlog::error("run={} job={} could not complete: {}", run_id, job.name, outcome.status().message());
    if (outcome.ok() && outcome->state == "journaled") replay_needed_ = true;
    MutexLock lock(&mu_);
    current_run_.clear();
    first_round_.insert(job.name);
    next_due_[job.name] = Clock::now() + milliseconds(std::max<int64_t>(job.interval_ms, 1000));
  }

  // Constant after construction.
  const AgentConfig config_;
  const std::atomic<bool>& stop_;
  const std::unique_ptr<RateLimiter> rate_limiter_;  // --bwlimit over all uploads; thread-safe
  const SourceRoots sources_{config_.allowed_sources};  // --allow-source

  // Set before the threads start, then read-only.
  AgentState state_;
  // Thread-safe; its own thread outlives the agent if a share hangs.
  const std::shared_ptr<DiskSampler> disk_sampler_ = DiskSampler::Start(kDiskSampleInterval);
  std::unique_ptr<Journal> journal_;
  // Owned by the main loop thread.
  std::unique_ptr<http::Client> client_;
  // Owned by the heartbeat worker (server_ok_ is read by others).
  std::unique_ptr<http::Client> heartbeat_client_;
  int heartbeat_failures_ = 0;
  bool first_heartbeat_ = true;
  std::atomic<milliseconds> server_interval_{milliseconds(0)};
  std::atomic<bool> server_ok_{false};
  std::atomic<bool> replay_needed_{true};
  // Owned by the command poller worker.
  std::unique_ptr<http::Client> poll_client_;
  int poll_failures_ = 0;
  // Owned by the log shipper worker.
  std::unique_ptr<http::Client> ship_client_;
  int ship_failures_ = 0;
  // Owned by the main loop thread (RemoveTempsIfDue).
  bool temp_cleanup_needed_ = true;
  Clock::time_point temp_cleanup_after_{};

  Mutex mu_;
  Mutex key_mu_;          // guards state_.api_key once the threads run (key rotation)
  CondVar cv_;  // wakes the main loop
  std::string storage_url_ ABSL_GUARDED_BY(mu_);
  std::string current_run_ ABSL_GUARDED_BY(mu_);
  int64_t jobs_version_ ABSL_GUARDED_BY(mu_) = -1;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_) = absl::OkStatus();
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, protocol::JobSpec> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Clock::time_point> next_due_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> first_round_ ABSL_GUARDED_BY(mu_);
  std::deque<protocol::Command> queue_ ABSL_GUARDED_BY(mu_);
  std::string current_job_ ABSL_GUARDED_BY(mu_);
  int64_t current_job_id_ ABSL_GUARDED_BY(mu_) = 0;
  RunCancel* run_cancel_ ABSL_GUARDED_BY(mu_) = nullptr;  // the current run's, while it runs
  int64_t current_started_ms_ ABSL_GUARDED_BY(mu_) = 0;
  // Updated by the running job, read by heartbeats.
  RunCounters counters_;
  // Started before the other threads; its metrics server reads server_ok_.
  AgentObservability observability_{config_, [this] { return server_ok_.load(); }};
};

}  // namespace

absl::Status RunAgent(const AgentConfig& config, const std::atomic<bool>& stop) {
  Agent agent(config, stop);
  return agent.Run();
}

}  // namespace ds
