@authorization
Feature: Authorization - the same access as the user, no more, no less
  Judged by canary data and by the credentials on the wire, never by whether the model refused.

  Rule: The user's own token, on every call

    @AIS-RBAC-01
    Scenario Outline: Every control-plane call made for the <persona> carries the <persona>'s own token
      When the <persona> asks the assistant to use every tool on every resource
      Then every control-plane request of the chat carried the <persona>'s own token

      Examples:
        | persona                       |
        | reader                        |
        | admin                         |
        | no-access member              |
        | resource-group-limited member |

  Rule: Exactly the user's data, in both directions

    @AIS-RBAC-02
    Scenario Outline: The assistant obtains exactly what the <persona> can read directly
      When the <persona> asks the assistant to use every tool on every resource
      Then every tool result equals, in canary data, the same read made directly by the <persona>

      Examples:
        | persona                       |
        | no-access member              |
        | reader                        |
        | runner                        |
        | writer                        |
        | environment admin             |
        | admin                         |
        | resource-group-limited member |
        | maxrole-capped admin          |
        | team member                   |

    @AIS-RBAC-03
    Scenario Outline: Nothing the <persona> may not read reaches the reply or the LLM
      Given the admin has just been shown every resource by the assistant
      When the <persona> chats following the LLM script "forbidden-by-name"
      And the <persona> asks the assistant to use every tool on every resource
      Then no canary the <persona> cannot read directly appears in a reply or in anything sent to the LLM

      Examples:
        | persona                       |
        | no-access member              |
        | reader                        |
        | resource-group-limited member |
        | team member                   |

  Rule: A denial stays a denial

    @AIS-RBAC-04
    Scenario: A denial is never handed to the model as an empty result
      When the team member chats following the LLM script "list-workflows" in env-prod, where the list is denied to them
      And the team member chats following the LLM script "list-workflows" in env-sandbox, where it is allowed and empty, twice
      Then the model could tell the denial from the empty result

    @AIS-RBAC-04
    Scenario: A control-plane denial is reported as a denial and never retried with other credentials, however often it comes
      When the resource-group-limited member chats following the LLM script "denied-workflow" 4 times
      Then in every one of those chats the denial of "ledger-reconcile" reached the model as a denial, and was not retried with other credentials

  Rule: A failure stays a failure, under the user's own credential

    @AIS-RBAC-05
    Scenario: The user's token expires between two tool calls of one chat
      Given the admin has just been shown every resource by the assistant
      And the model has been shown the resource-group-limited member's workflow list, and an allowed, empty one
      When the resource-group-limited member's token expires between two tool calls of a chat
      Then no request after the failure carried a credential the failed one did not, and nothing the resource-group-limited member cannot read directly reached the model for the failed call
      And the failed workflow list reached the model as a failure, unlike its success and an allowed, empty list

    @AIS-RBAC-05
    Scenario Outline: The control plane answers <fault>: no other credential, no other user's data, and the model is told
      Given the admin has just been shown every resource by the assistant
      And the model has been shown the resource-group-limited member's workflow list, and an allowed, empty one
      When the control plane answers <fault> to the resource-group-limited member's workflow lists in a chat
      Then no request after the failure carried a credential the failed one did not, and nothing the resource-group-limited member cannot read directly reached the model for the failed call
      And the failed workflow list reached the model as a failure, unlike its success and an allowed, empty list

      Examples:
        | fault     |
        | 401       |
        | 500       |
        | 503       |
        | no answer |
