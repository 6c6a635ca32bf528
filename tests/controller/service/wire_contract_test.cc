// The generated sesame.v1 code builds, links (Debian's protobuf 3.21 with
// gRPC 1.51) and works end to end: messages round-trip, and both services
// answer over an in-process channel with the callback API.
#include <grpcpp/grpcpp.h>

#include <memory>

#include "gtest/gtest.h"
#include "sesame/v1/admin.grpc.pb.h"
#include "sesame/v1/agent.grpc.pb.h"
#include "sesame/v1/common.pb.h"

namespace sesame::controller {
namespace {

TEST(WireContractTest, AgentMessagesRoundTrip) {
  v1::AgentMessage m;
  m.set_id("spool-7f3a/42");
  v1::KnockMatched* k = m.mutable_knock_matched();
  k->set_door("ssh");
  k->set_sequence_id(17);
  v1::Knock* knock = k->add_knocks();
  knock->set_port(7000);
  knock->set_protocol(v1::PROTOCOL_UDP);
  k->set_source("2001:db8::7");
  k->mutable_matched_at()->set_seconds(1700000000);
  k->set_offline(true);
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  v1::AgentMessage back;
  ASSERT_TRUE(back.ParseFromString(bytes));
  EXPECT_EQ(back.body_case(), v1::AgentMessage::kKnockMatched);
  EXPECT_EQ(back.knock_matched().knocks(0).protocol(), v1::PROTOCOL_UDP);
  EXPECT_TRUE(back.knock_matched().offline());
  EXPECT_EQ(back.id(), "spool-7f3a/42");

  v1::ControllerMessage c;
  v1::Delta* d = c.mutable_delta();
  d->set_revision(99);
  d->mutable_sequence_burnt()->set_sequence_id(17);
  ASSERT_TRUE(c.SerializeToString(&bytes));
  v1::ControllerMessage c2;
  ASSERT_TRUE(c2.ParseFromString(bytes));
  EXPECT_EQ(c2.delta().change_case(), v1::Delta::kSequenceBurnt);
  EXPECT_EQ(c2.delta().revision(), 99u);
}

// Minimal callback-API services: enough to prove the stubs link and run.
class EchoAgentService final : public v1::AgentService::CallbackService {
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Session(
      grpc::CallbackServerContext* context) override {
    class Reactor final : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
     public:
      Reactor() { StartRead(&in_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        out_.Clear();
        out_.mutable_snapshot()->set_revision(in_.hello().last_revision() + 1);
        StartWrite(&out_);
      }
      void OnWriteDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::CANCELLED);
          return;
        }
        StartRead(&in_);
      }
      void OnDone() override { delete this; }

     private:
      v1::AgentMessage in_;
      v1::ControllerMessage out_;
    };
    return new Reactor;
  }
};

class KeyAdminService final : public v1::AdminService::CallbackService {
  grpc::ServerUnaryReactor* GetAuditPublicKey(grpc::CallbackServerContext* context,
                                              const v1::GetAuditPublicKeyRequest*,
                                              v1::GetAuditPublicKeyResponse* response) override {
    response->set_public_key_pem("-----BEGIN PUBLIC KEY-----\n...");
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

TEST(WireContractTest, ServicesAnswerInProcess) {
  EchoAgentService agent_service;
  KeyAdminService admin_service;
  grpc::ServerBuilder builder;
  builder.RegisterService(&agent_service);
  builder.RegisterService(&admin_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  std::shared_ptr<grpc::Channel> channel = server->InProcessChannel(grpc::ChannelArguments());

  auto admin = v1::AdminService::NewStub(channel);
  grpc::ClientContext admin_context;
  admin_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetAuditPublicKeyResponse key;
  grpc::Status status = admin->GetAuditPublicKey(&admin_context, v1::GetAuditPublicKeyRequest(), &key);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(key.public_key_pem().rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);

  auto agent = v1::AgentService::NewStub(channel);
  grpc::ClientContext session_context;
  session_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = agent->Session(&session_context);
  v1::AgentMessage hello;
  hello.set_id("h1");
  hello.mutable_hello()->set_last_revision(41);
  ASSERT_TRUE(stream->Write(hello));
  v1::ControllerMessage reply;
  ASSERT_TRUE(stream->Read(&reply));
  EXPECT_EQ(reply.snapshot().revision(), 42u);
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

}  // namespace
}  // namespace sesame::controller
