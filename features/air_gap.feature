@air-gap
Feature: Air gap - with a self-hosted LLM no data leaves the infrastructure
  The service is configured as an air-gapped install is: the LLM inside the lab, no proxy,
  DO_NOT_TRACK=true. Its host has no way out: every attempt, in any IP protocol, over IPv4 or
  IPv6, ends at the egress witness or is recorded by the packet witness. An instance kept idle and
  air-gapped for the whole run is judged over its life too.

  Background:
    Given the egress witness is shown to record an attempt to leave the service's host

  @AIS-AIRGAP-01
  Scenario: The service starts and answers chats that use tools
    Given the service has just started air-gapped
    When the reader asks the assistant to use every tool on every resource
    Then the model received the results of the tools it called
    And the chat succeeded

  @AIS-AIRGAP-02
  Scenario: No attempt in any IP protocol leaves the allowlist, in chat, error path and idle time
    Given the service runs air-gapped
    When the reader chats following the LLM script "one-tool"
    And the reader chats following the LLM script "provider-failure"
    And the service idles for the profile's idle window
    Then nothing left the service's host except to the lab infrastructure

  @AIS-AIRGAP-02 @lifetime
  Scenario: Over the service's whole air-gapped life, shutdown included, nothing leaves
    When the service's life ends: it is stopped and its last words are recorded
    Then nothing left the infrastructure in any period with the air-gapped configuration

  @AIS-AIRGAP-03
  Scenario: Conversation content goes to the configured LLM and nowhere else
    Given the service runs air-gapped
    When the reader asks the assistant to use every tool on every resource
    And the service idles for the profile's idle window
    Then the conversation's content reached the configured LLM and nothing else

  @AIS-AIRGAP-03 @lifetime
  Scenario: Over the service's whole life, in every configuration, conversation content went to the configured LLM only
    When the service's life ends: it is stopped and its last words are recorded
    Then no conversation's content reached anything but the LLM configured at the time
