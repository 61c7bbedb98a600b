// Delivers a run's results: journaled durably first, then reported to the server (`complete`),
// on a thread of its own so that the next group's commit overlaps this group's journal writes
// and request. Holds results back while the run may still send delta compares, and keeps them
// only in the journal once the server stopped answering. Internal to src/agent.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/run_parts.h"
#include "agent/server_api.h"
#include "common/bounded_queue.h"

namespace ds {

class Deliverer {
 public:
  // `hold`: report nothing until Release() (a delta run's results would move the job's index on
  // from the base its delta compares are checked against). REQUIRES: run, server and outcome
  // outlive this; `server` is used only by the delivery thread until it is joined.
  Deliverer(const RunContext& run, AgentServer* server, bool hold, JobRunOutcome* outcome);
  ~Deliverer();  // joins the delivery thread
  Deliverer(const Deliverer&) = delete;
  Deliverer& operator=(const Deliverer&) = delete;

  // Offline: results are only journaled (the journal replays them). Before the first Enqueue.
  void StopReporting() { reporting_ = false; }
  // Hands a batch to the delivery thread (started on first use); waits while two are queued.
  // Batches are delivered in the order given.
  void Enqueue(std::vector<protocol::FileResult> batch);
  // No more compares: the next batch reported carries the held ones first.
  void Release() { hold_ = false; }
  // Waits until every queued batch is delivered and the thread is gone.
  void Join();
  // Joins, then delivers `rest` as the run's last batch: the journal closes the run (with
  // `run_error`, interrupted when stopping) and the server's answer gives outcome->state.
  // Returns the first refusal of any batch (the server's error, or the journal's).
  [[nodiscard]] absl::Status Finish(std::vector<protocol::FileResult> rest,
                                    const std::string& run_error);
  // After Finish: every result reached the server.
  [[nodiscard]] bool reported_all() const { return reporting_ && status_.ok(); }

 private:
  void Loop();
  // Journals `batch`, counts it, then reports it (and the held ones first) unless held.
  [[nodiscard]] absl::Status Deliver(std::vector<protocol::FileResult> batch, bool final,
                                     bool hold);
  // Reports one journaled batch while the server answers; once it stops answering, the journal
  // keeps the rest for replay (reporting_ false).
  [[nodiscard]] absl::Status Report(const std::vector<protocol::FileResult>& batch,
                                    int64_t journaled, bool final);
  // Counts results in the outcome and the progress, and remembers what landed as indexed.
  void Account(const std::vector<protocol::FileResult>& results);

  // Constant after construction.
  const RunContext& run_;
  AgentServer* const server_;
  JobRunOutcome* const outcome_;

  std::atomic<bool> hold_;
  BoundedQueue<std::vector<protocol::FileResult>> queue_{2};
  std::thread thread_;
  // Touched by the delivery thread only, until it is joined; then by the caller.
  bool reporting_ = true;
  absl::Status status_ = absl::OkStatus();
  std::string run_error_;
  std::vector<std::pair<std::vector<protocol::FileResult>, int64_t>> held_;  // with journal batch
};

}  // namespace ds
