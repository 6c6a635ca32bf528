// sesame-agent as part of a fleet: the controller's doors, sequences and
// grants applied here, knocks reported there, an offline reserve and a
// durable spool for when "there" is out of reach.
//
// Threads and what they may do:
// - capture thread: matcher().OnPacket/Tick (managed sequences), and
//   StandaloneOpened(); completions are only enqueued (OnCompleted), never
//   waited for: a decision that needs the controller cannot stall capture.
// - link threads (ControllerLink): only enqueue what they receive.
// - grant worker thread: reports what the backends did, only enqueuing.
// - the managed worker (this class's thread): everything else — the held
//   state and its file, the spool, the conversation with the controller,
//   grants and revocations ordered through the GrantWorker.
//
// The conversation (protos/sesame/v1/agent.proto), as the agent runs it:
//   session up  -> Hello (revision, held sequences and grants, spool depth),
//                  then every unconfirmed spool message again, oldest first
//   Snapshot    -> replaces what is held; Ack(revision) once the matcher has
//                  it (the state file follows within kSaveDelay: it only
//                  serves a restart while the controller is unreachable)
//   Delta       -> applied, Ack(highest revision) likewise; a burn reaches
//                  the matcher before anything else happens
//   knock       -> sequence spent at once; online: KnockMatched sent, then
//                  spooled (synced within kSaveDelay: the controller has it
//                  already); the KnockVerdict confirms it and, when OPENED,
//                  carries the grant (applied then, and again harmlessly
//                  when its Delta arrives)
//   offline     -> a reserve sequence is admitted here: KnockMatched
//                  {offline} spooled (fsync) before the door opens, so a
//                  crash cannot make it usable twice; a fleet sequence is
//                  only spooled, and the controller decides when it hears
//                  of it. "Online" means a session whose Snapshot arrived.
//   replay      -> a spent sequence completed again (the matcher's replay
//                  watch): KnockMatched sent and spooled as online, never
//                  admitted here (not even offline, from the reserve); the
//                  controller answers REPLAY and audits knock.replay
//   grants      -> GrantResult when the backend applied or refused one,
//                  RevokeApplied when it closed (revoked, or expired);
//                  after a revocation with kill_sessions, an AuditEvent
//                  grant.sessions_killed with what was ended
//   heartbeats  -> every Snapshot.heartbeat_interval, with counters
//   scanners    -> ScannerSeen through ScannerNotices (scanner_notices.h):
//                  the first of a reporting window at once, the rest as one
//                  aggregate at its end; spooled as notices, the first thing
//                  a full spool gives up (audit_spool.h)
//   Receipt     -> drops confirmed messages from the spool
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/config/config.h"
#include "agent/grants/grant_manager.h"
#include "agent/managed/audit_spool.h"
#include "agent/managed/controller_link.h"
#include "agent/managed/managed_matcher.h"
#include "agent/managed/managed_state.h"
#include "agent/managed/state_writer.h"
#include "agent/managed/scanner_notices.h"
#include "common/clock.h"
#include "common/prometheus_text.h"

namespace sesame {

struct ManagedAgentOptions {
  // Holds "managed-state" and "spool"; created if missing.
  std::string state_dir;
  std::string version = "0.1.0";
  // link.credentials may be left empty and made by `credentials` at Start:
  // gRPC must not be initialised before the daemon forks.
  LinkOptions link;
  std::function<std::shared_ptr<grpc::ChannelCredentials>()> credentials;
  std::vector<std::string> advertise_hosts;
  int reserve_size = 0;  // reported to the controller as a wish (0: none)
  MatcherOptions matcher;
  size_t max_sequences = ManagedMatcher::kDefaultCapacity;  // held at once, live and spent
  absl::Duration scan_report_window = absl::Seconds(60);  // ScanReportWindow
  uint64_t spool_limit_bytes = AuditSpool::kDefaultMaxBytes;  // SpoolLimitMB
  const Clock* clock = &RealClock::Instance();
};

// What a configuration asks for; credentials from `identity`, made at Start.
struct TlsIdentity;
ManagedAgentOptions ManagedAgentOptionsFor(const AgentConfig& config, const TlsIdentity& identity);

struct ManagedStatus {
  bool online = false;
  uint64_t revision = 0;
  size_t sequences = 0;
  size_t sequences_capacity = 0;  // the matcher's (live and spent held at once)
  size_t sequences_waiting = 0;   // live, not recognised for lack of room
  size_t reserve_left = 0;
  size_t spool_depth = 0;
  uint64_t spool_bytes = 0;
  uint64_t spool_limit = 0;
  SpoolCounters spool;
  ScannerNoticeCounters scanner_notices;
  uint64_t confirmed = 0;  // spooled reports the controller confirmed
  uint64_t knocks_reported = 0;
  uint64_t offline_admitted = 0;
  uint64_t replays = 0;           // reported knocks the controller called a replay
  uint64_t unknown_verdicts = 0;  // ... or an unknown sequence
  std::string last_error;
  LinkStats link;
};

class ManagedAgent final : public ManagedKnockSink, public LinkListener {
 public:
  // Loads the held state and the spool (no thread, no network yet: safe
  // before the daemon forks). A state file that cannot be read is moved
  // aside and the agent starts empty; a spool that cannot be opened is an
  // error (records must not be lost silently).
  static absl::StatusOr<std::unique_ptr<ManagedAgent>> Create(const AgentConfig& config,
                                                              ManagedAgentOptions options);
  ~ManagedAgent() override;

  // The managed doors as held now (for the first backend set).
  std::vector<DoorConfig> DoorConfigs() const;
  // Wraps a door lookup so that what the backends do with grants comes back
  // here (GrantResult, RevokeApplied, audit of local grants).
  BackendLookup Reporting(BackendLookup inner);

  // Starts the worker and the link. `grants` must outlive this object.
  // `doors_changed` runs on the worker thread when the managed doors change,
  // before any grant for a new door is ordered (BackendSwitch::SetManaged).
  void Start(GrantWorker& grants, std::function<void(std::vector<DoorConfig>)> doors_changed);
  // Stops the link, then the worker (after it handled what was queued).
  void Stop();
  // After a reload: new door sections and options (link settings apply at
  // the next start).
  void Reconfigure(const AgentConfig& config);

  // Capture thread.
  ManagedMatcher& matcher() { return *matcher_; }
  // A standalone door opened (sent to the controller as an audit event).
  void StandaloneOpened(const Grant& grant);
  // Counters of the rest of the agent, sent with every heartbeat.
  void SetMetrics(std::vector<MetricSample> metrics);
  // The managed side's own counters and gauges (link, spool, reserve,
  // reports and verdicts), as of the last published status; heartbeats
  // carry these after SetMetrics' ones. Any thread.
  std::vector<MetricSample> Metrics() const;

  ManagedStatus status() const;

  // ManagedKnockSink (capture thread).
  void OnCompleted(CompletedKnock knock) override;
  void OnScanner(ScannerReport report) override;
  // LinkListener (link threads).
  void OnSessionStarted(uint64_t session, const std::string& address) override;
  void OnMessage(uint64_t session, v1::ControllerMessage message) override;
  void OnSessionEnded(uint64_t session, const absl::Status& status) override;
  void OnConnectFailed(const std::string& address, const absl::Status& status, absl::Duration retry_in) override;

 private:
  struct SessionStarted {
    uint64_t session;
    std::string address;
  };
  struct Received {
    uint64_t session;
    v1::ControllerMessage message;
  };
  struct SessionEnded {
    uint64_t session;
    absl::Status status;
  };
  struct GrantOutcome {
    bool opened;  // false: closed
    Grant grant;
    absl::Status status;
  };
  struct StandaloneGrant {
    Grant grant;
  };
  struct SessionsKilled {  // after a revocation with kill_sessions
    std::string door;
    IpAddress address;
    KilledSessions killed;
  };
  struct NewConfig {
    AgentConfig config;
  };
  struct ScannerNoticeReady {};  // scanner_notices_ has one to take now
  struct StateSaved {
    uint64_t generation;
    absl::Status status;
  };
  using Event = std::variant<SessionStarted, Received, SessionEnded, CompletedKnock, ScannerNoticeReady,
                             GrantOutcome, StandaloneGrant, SessionsKilled, NewConfig, StateSaved>;

  // Error text sent to the controller (GrantResult, RevokeApplied,
  // Heartbeat.last_error) is cut to this length.
  static constexpr size_t kMaxErrorLength = 512;
  // "door|address": how awaiting_open_, revoking_ and local_opens_ name a grant.
  static std::string Key(const std::string& door, const IpAddress& address);

  // Worker thread (or Create, before the thread starts), except Post: any
  // thread. By file:
  // managed_agent.cc: the inbox and the worker's loop.
  ManagedAgent(const AgentConfig& config, ManagedAgentOptions options);
  void Post(Event event);
  void Run();
  void Handle(Event& event);
  // managed_agent_session.cc: the conversation with the controller.
  void HandleSessionStarted(const SessionStarted& e);
  void HandleMessage(v1::ControllerMessage& m);
  // A snapshot, or one of its parts (Snapshot.more): applied when whole.
  void HandleSnapshot(v1::Snapshot& part);
  void HandleVerdict(const v1::KnockVerdict& v);
  void Carry(const ManagedState::Changes& changes);
  v1::AgentMessage MakeHello();
  void SendNow(v1::AgentMessage message);  // Ack, Heartbeat: not spooled
  void Confirm(const std::vector<std::string>& ids);
  // managed_agent_reports.cc: knocks and scanners reported, the spool.
  void HandleCompleted(const CompletedKnock& k);
  // Spools and sends the scanner notices due at `now`; a notice the full
  // spool refuses goes back into the next aggregate.
  void ReportScannerNotices(absl::Time now);
  // Spools (fsync) then sends when a session is up.
  void Report(v1::AgentMessage message);
  absl::flat_hash_set<uint64_t> Consumed() const;  // reported, unanswered
  // managed_agent_grants.cc: grants from the controller, and what the
  // backends did with them.
  void HandleGrantOutcome(const GrantOutcome& o);
  void ReportSessionsKilled(const SessionsKilled& k);
  void OpenGrant(const v1::Grant& grant);
  void CloseGrant(const v1::Grant& grant);
  // managed_agent_held.cc: the held doors and sequences put to use, the
  // state file.
  void RecomputeDoors();
  void PublishSequences();
  void PublishChangedSequences();  // publish_ids_ only
  std::optional<LiveSequence> ToLive(uint64_t id, const v1::HeldSequence& s) const;
  void PublishToMatcher();  // what publish_all_ / publish_ids_ ask for
  // Serializes the state and hands it to writer_; StateSaved follows.
  void SaveState();
  // The same, waiting for the write: the state file holds it on return.
  void SaveStateNow();
  void HandleStateSaved(const StateSaved& e);
  const DoorConfig* DoorConfigFor(const std::string& door) const;
  bool ServesDoor(const std::string& door) const;
  std::vector<Knock> GrantPortsOf(const std::string& door) const;
  absl::Duration GrantTtlOf(const std::string& door) const;
  // managed_agent_status.cc: status, metrics, heartbeats, the last error.
  void SendHeartbeat();
  void NoteError(const std::string& error);
  void PublishStatus();
  ManagedStatus LiveStatus() const;  // worker thread

  // Fixed at construction.
  const ManagedAgentOptions options_;
  const std::string state_path_;
  const absl::Time started_at_;
  std::unique_ptr<ManagedMatcher> matcher_;
  ScannerNotices scanner_notices_;  // thread-safe: capture thread in, worker out
  std::unique_ptr<ControllerLink> link_;
  GrantWorker* grants_ = nullptr;
  std::function<void(std::vector<DoorConfig>)> doors_changed_;
  std::thread thread_;
  std::atomic<bool> shutting_down_{false};

  // Inbox.
  mutable absl::Mutex mu_;
  std::deque<Event> inbox_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<MetricSample> metrics_ ABSL_GUARDED_BY(mu_);
  std::vector<DoorConfig> door_configs_shared_ ABSL_GUARDED_BY(mu_);
  ManagedStatus status_ ABSL_GUARDED_BY(mu_);

  // Worker thread only (and Create, before the thread starts).
  AgentConfig config_;
  ManagedState state_;
  std::unique_ptr<AuditSpool> spool_;
  std::vector<DoorConfig> door_configs_;
  uint64_t session_ = 0;
  bool online_ = false;
  uint64_t acked_ = 0;
  std::optional<v1::Snapshot> snapshot_parts_;  // received so far of a snapshot in parts
  bool dirty_ = false;  // state to save
  // Sequences to publish to the matcher: all of them, or these ids only.
  bool publish_all_ = true;
  absl::flat_hash_set<uint64_t> publish_ids_;
  // The state file and deferred spool appends are synced a little later,
  // off the path from a report to the handling of its answer.
  absl::Time save_due_ = absl::InfiniteFuture();
  absl::Time last_save_ = absl::InfinitePast();  // when the last save ended
  absl::Duration last_save_took_;
  absl::Time sync_due_ = absl::InfiniteFuture();
  absl::Time next_heartbeat_ = absl::InfiniteFuture();
  absl::flat_hash_map<std::string, std::vector<uint64_t>> awaiting_open_;  // "door|address" -> grant ids
  absl::flat_hash_map<uint64_t, std::string> revoking_;                    // grant id -> "door|address"
  absl::flat_hash_map<std::string, std::string> local_opens_;              // "door|address" -> why
  std::string last_error_;
  uint64_t knocks_reported_ = 0;
  uint64_t offline_admitted_ = 0;
  uint64_t confirmed_ = 0;
  // Consumption reports whose sequence's removal is not in the state file
  // yet (with the generation of the save that will hold it; 0: none
  // started), and those of them the controller already confirmed: they
  // leave the spool only once that save is written, or a crash in between
  // would bring the sequence back (Consumed() no longer naming it, the
  // state file still holding it) and a reserve sequence could be used
  // offline twice.
  absl::flat_hash_map<std::string, uint64_t> unsaved_consumptions_;
  std::vector<std::string> confirm_after_save_;
  std::unique_ptr<StateWriter> writer_;
  uint64_t save_generation_ = 0;
  uint64_t replays_ = 0;
  uint64_t unknown_verdicts_ = 0;
};

}  // namespace sesame
