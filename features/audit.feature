@audit
Feature: Audit - all actions are logged in the audit log under the user's identity
  Read from the audit log as a customer reads it (GET /organizations/{id}/audit), matched one to
  one with the requests the control plane received from the service.

  Rule: Every action, once, under the user

    @AIS-AUDIT-01
    Scenario Outline: Every action of the <persona>'s chat is audited once under the <persona>
      When the <persona> chats following the LLM script "audit-trail"
      Then every control-plane request of the chat is in the audit log exactly once, under the <persona>
      And every tool result the model received stands on its own control-plane request

      Examples:
        | persona                       |
        | reader                        |
        | resource-group-limited member |
        | admin                         |

  Rule: Concurrent users are never confused

    @AIS-AUDIT-02
    Scenario: Users chatting at the same moment are each audited for their own actions
      When these users ask about their own workflow at the same moment:
        | persona                       | workflow     |
        | reader                        | checkout-e2e |
        | writer                        | refund-api   |
        | admin                         | ledger-reconcile |
        | resource-group-limited member | search-smoke |
      Then each of those actions is in the audit log under the user who asked

  Rule: At scale, no user is ever taken for another

    @AIS-AUDIT-02 @certification
    Scenario: Fifty users of mixed roles chat ten times each, all at once, and each is audited for their own actions only
      When 50 users of mixed roles and resource groups chat 10 times each, all at once
      Then every control-plane action is in the audit log under the user whose chat asked for it
      And the witnesses and the mocks kept up: every chat, tool call, result and audit entry is in their records

    @AIS-RBAC-03 @certification
    Scenario: Fifty users of mixed roles chat ten times each, all at once, and none is shown another's conversation, token or data
      When 50 users of mixed roles and resource groups chat 10 times each, all at once
      Then no reply or LLM request of any user carries another user's conversation, token or data they may not read
      And the witnesses and the mocks kept up: every chat, tool call, result and audit entry is in their records
