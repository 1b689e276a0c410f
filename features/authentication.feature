@authentication
Feature: Authentication - the assistant uses the JWT of the logged-in user
  The service must identify the user by a valid token before it does anything, and that token
  is the user's own business: it never goes to the model provider.

  Rule: No valid token, no action

    @AIS-AUTH-01
    Scenario: A chat without a bearer token is refused before anything happens
      Given the witnesses are shown to record a reader's chat
      When an anonymous user chats
      Then the chat is refused with status 401
      And the chat reached neither the LLM nor the control plane

    @AIS-AUTH-02
    Scenario Outline: A token that is <variant> is refused like every bad token
      Given the witnesses are shown to record a reader's chat
      When the reader chats with a token that is <variant>
      Then the chat is refused with status 401
      And the refusal looks exactly like the refusal of a garbage token
      And the chat reached neither the LLM nor the control plane

      Examples:
        | variant               |
        | expired               |
        | not-yet-valid         |
        | unknown-key           |
        | unknown-key-known-kid |
        | alg-none              |
        | hs256-with-public-key |
        | wrong-issuer          |
        | wrong-audience        |
        | missing-subject       |
        | tampered-payload      |

  Rule: The user's token stays between the user, the service and the control plane

    @AIS-AUTH-03
    Scenario Outline: The <persona>'s token never reaches the LLM, on the first request or later ones
      When the <persona> asks the assistant to use every tool on every resource
      And the <persona> chats following the LLM script "list-workflows"
      Then the <persona>'s token appears in no LLM request of any of those chats, header or message
      And the chat succeeded

      Examples:
        | persona |
        | reader  |
        | admin   |
