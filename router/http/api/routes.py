"""THE route table of /api/v1: the router registration and the OpenAPI document come from it.

Who may call what (role agent additionally only with its own `{agent_id}`, see table.py):

| roles                     | for                                                            |
|---------------------------|----------------------------------------------------------------|
| public                    | login, the OpenAPI document                                    |
| intake, admin             | create interactions, resident messages, resident left          |
| agent, supervisor, admin  | sign an agent in, change its state, read an agent, offers      |
| agent (holding it), staff | read an interaction, its conversation, its resident's history  |
| agent, admin              | work an interaction: accept, reject, complete, wrap-up...      |
| supervisor, admin         | all agents, queues, references, live figures, moves            |
| supervisor, admin         | withdraw a resident's consent to be recognised across channels |
| supervisor, admin         | read the agents and queues managed at run time (admin/...)     |
| admin                     | change agents and queues; manage users (admin/...)             |
| agent, supervisor, admin  | search the knowledge base, read a card                         |
| agent, admin              | mark an interaction as answered from a knowledge card          |
| agent (holding it), staff | make a case of an interaction, link it to an open case         |
| unit members, staff       | read a unit's cases, change a case's status or unit            |
| unit members, staff       | add a photo to a case                                          |
| + agent holding its ix    | see a case's photos                                            |
| public                    | a case's public view by number (no personal data)              |
"""

from __future__ import annotations

from router.auth import Role
from router.config import AgentConfig
from router.http.api import (
    admin,
    admin_users,
    agents,
    auth_routes,
    cases,
    intake,
    knowledge,
    openapi,
    residents,
    supervision,
)
from router.http.api.schemas import (
    Accepted,
    AgentList,
    AgentLoginRequest,
    AgentStateRequest,
    AgentView,
    Closed,
    Completed,
    CompleteRequest,
    ConsentWithdrawalRequest,
    ConsentWithdrawn,
    InteractionCreated,
    InteractionList,
    InteractionView,
    LoggedOut,
    LoginRequest,
    LoginResponse,
    Me,
    MessageList,
    MessagePosted,
    MessageRequest,
    PriorityRequest,
    QueueList,
    QueueView,
    Rejected,
    Reprioritised,
    ResidentHistory,
    ResidentLeft,
    ResidentLeftRequest,
    Transferred,
    WrapupEndRequest,
)
from router.http.api.schemas_admin import (
    AdminAgent,
    AdminAgentList,
    AdminQueue,
    AdminQueueList,
    AdminUser,
    AdminUserList,
    QueueBody,
    Removed,
    ResetDone,
    Unlocked,
    UserCreateRequest,
    UserRemoved,
    UserUpdateRequest,
)
from router.http.api.schemas_cases import (
    CaseCreated,
    CaseCreateRequest,
    CaseLinked,
    CaseLinkRequest,
    CaseList,
    CaseStatusChanged,
    CaseStatusRequest,
    CaseUnitRequest,
    CaseView,
    DuplicateList,
    PhotoAdded,
    PublicCase,
)
from router.http.api.schemas_knowledge import (
    AnsweredFrom,
    AnsweredFromRequest,
    CardView,
    KnowledgeResults,
)
from router.http.api.table import Route
from router.models import IntakeRequest, TransferRequest
from router.stats import LiveSnapshot

ANYONE = frozenset(Role)
INTAKE = frozenset({Role.intake, Role.admin})
STAFF = frozenset({Role.supervisor, Role.admin})
READERS = frozenset({Role.agent, Role.supervisor, Role.admin})
AGENT_WORK = frozenset({Role.agent, Role.admin})
ADMIN = frozenset({Role.admin})

_LIVE = ("Validated against the whole configuration like the YAML file (422 validation_error "
         "with details, each loc relative to this entry when it is about it); applied at once "
         "in every process, no restart. ")

_IX = "/agents/{agent_id}/interactions/{ix_id}"

ROUTES: list[Route] = [
    # --- auth ---------------------------------------------------------------------------
    Route("POST", "/auth/login", auth_routes.login, "Log in and get a session cookie",
          LoginRequest, LoginResponse, None, tag="auth", errors=(429,),
          description="Sets the HttpOnly, SameSite=Strict cookie cityline_session and returns "
          "the CSRF token to send as X-CSRF-Token on unsafe requests."),
    Route("POST", "/auth/logout", auth_routes.logout, "End the session",
          None, LoggedOut, ANYONE, tag="auth"),
    Route("GET", "/auth/me", auth_routes.me, "Who am I", None, Me, ANYONE, tag="auth"),
    Route("GET", "/openapi.json", openapi.openapi_document, "This document",
          None, None, None, tag="meta"),
    # --- intake -------------------------------------------------------------------------
    Route("POST", "/interactions", intake.create_interaction, "Create an interaction",
          IntakeRequest, InteractionCreated, INTAKE, status=201, tag="intake",
          description="201 for a new contact; 200 when external_id repeats an earlier one.",
          errors=(404,)),
    Route("POST", "/interactions/{ix_id}/resident-left", intake.resident_left,
          "Report that the resident left", ResidentLeftRequest, ResidentLeft, INTAKE,
          tag="intake", errors=(409,)),
    Route("POST", "/interactions/{ix_id}/resident-messages", intake.resident_message,
          "Add a message from the resident", MessageRequest, MessagePosted, INTAKE,
          tag="intake", errors=(409,)),
    Route("GET", "/interactions/{ix_id}", intake.get_interaction, "Read an interaction",
          None, InteractionView, READERS, tag="interactions",
          description="An agent may read only an interaction it holds."),
    Route("GET", "/interactions/{ix_id}/messages", intake.interaction_messages,
          "Read the conversation of an interaction", None, MessageList, READERS,
          tag="interactions", description="An agent may read only an interaction it holds."),
    Route("GET", "/references/{ref}", intake.find_reference, "Find an interaction by reference",
          None, InteractionView, STAFF, tag="interactions"),
    Route("GET", "/interactions/{ix_id}/history", residents.interaction_history,
          "Earlier contacts of the same resident", None, ResidentHistory, READERS,
          tag="interactions",
          description="The resident's other interactions on any channel, newest first, when "
          "they consented to be recognised across channels (now or in an earlier contact, "
          "until withdrawn); otherwise recognised is false and the list empty. An agent may "
          "read only an interaction it holds."),
    # --- agents -------------------------------------------------------------------------
    Route("POST", "/agents/{agent_id}/login", agents.agent_login, "Sign an agent in",
          AgentLoginRequest, AgentView, READERS, tag="agents", errors=(409,)),
    Route("PUT", "/agents/{agent_id}/state", agents.set_agent_state, "Change an agent's state",
          AgentStateRequest, AgentView, READERS, tag="agents", errors=(409,)),
    Route("GET", "/agents/{agent_id}", agents.get_agent, "Read an agent",
          None, AgentView, READERS, tag="agents"),
    Route("GET", "/agents/{agent_id}/offers", agents.agent_offers, "Offers waiting for an agent",
          None, InteractionList, READERS, tag="agents"),
    Route("GET", "/agents/{agent_id}/interactions", agents.agent_interactions,
          "Interactions an agent holds", None, InteractionList, READERS, tag="agents"),
    Route("POST", f"{_IX}/accept", agents.accept, "Accept an offer",
          None, Accepted, AGENT_WORK, tag="agents", errors=(409,)),
    Route("POST", f"{_IX}/reject", agents.reject, "Reject an offer",
          None, Rejected, AGENT_WORK, tag="agents", errors=(409,)),
    Route("POST", f"{_IX}/complete", agents.complete, "End the conversation",
          CompleteRequest, Completed, AGENT_WORK, tag="agents", errors=(409,)),
    Route("POST", f"{_IX}/wrapup-end", agents.wrapup_end, "Finish after-contact work",
          WrapupEndRequest, Closed, AGENT_WORK, tag="agents", errors=(409,)),
    Route("POST", f"{_IX}/transfer", agents.agent_transfer, "Hand over to a queue or agent",
          TransferRequest, Transferred, AGENT_WORK, tag="agents", errors=(409,)),
    Route("POST", f"{_IX}/messages", agents.agent_message, "Send a message to the resident",
          MessageRequest, MessagePosted, AGENT_WORK, tag="agents", errors=(409,)),
    # --- knowledge base (router.knowledge) ------------------------------------------------
    Route("GET", "/knowledge", knowledge.search_knowledge, "Search the knowledge cards",
          None, KnowledgeResults, READERS, tag="knowledge", errors=(422,),
          description="Query parameters: q (words, at most 200 characters; empty lists the "
          "cards), lang (a city language: searched first, the cards shown in it; when nothing "
          "matches there every language is searched and fallback is true), topic (an "
          "information topic), limit (1..100, default knowledge.max_results). Accents of Latin "
          "letters and case are ignored, a word matches the words it begins; title and "
          "keyword hits rank above answer-text hits."),
    Route("GET", "/knowledge/{card_id}", knowledge.get_card, "Read a knowledge card",
          None, CardView, READERS, tag="knowledge", errors=(404, 422),
          description="?lang= a city language (default: the city's default language). 404 "
          "unknown_card."),
    Route("POST", f"{_IX}/answered-from", knowledge.answered_from,
          "Mark an interaction as answered from a knowledge card", AnsweredFromRequest,
          AnsweredFrom, AGENT_WORK, tag="agents", errors=(404, 409),
          description="While connected or in wrap-up (409 invalid_state otherwise); a later "
          "card replaces the earlier one. Appends a KBANSWER event: a contact never "
          "transferred counts as resolved from the knowledge base (kb_resolved). 404 "
          "unknown_card."),
    # --- supervision --------------------------------------------------------------------
    Route("GET", "/agents", supervision.list_agents, "Every agent with its state",
          None, AgentList, STAFF, tag="supervision"),
    Route("POST", "/interactions/{ix_id}/transfer", supervision.move_interaction,
          "Move a waiting interaction", TransferRequest, Transferred, STAFF,
          tag="supervision", errors=(409,)),
    Route("PUT", "/interactions/{ix_id}/priority", supervision.set_priority,
          "Change a waiting interaction's priority", PriorityRequest, Reprioritised, STAFF,
          tag="supervision", errors=(409,)),
    Route("GET", "/queues", supervision.list_queues, "Every queue with its waiting count",
          None, QueueList, STAFF, tag="supervision"),
    Route("GET", "/queues/{name}", supervision.get_queue, "One queue with its waiting count",
          None, QueueView, STAFF, tag="supervision"),
    Route("GET", "/stats/live", supervision.live_stats, "Live figures of the supervisor wall",
          None, LiveSnapshot, STAFF, tag="supervision"),
    # --- residents ----------------------------------------------------------------------
    Route("DELETE", "/residents/{resident_id}/consent", residents.withdraw_consent,
          "Withdraw a resident's consent to be recognised", None, ConsentWithdrawn, STAFF,
          tag="residents",
          description="Unlinks every identity (phone, e-mail, Telegram) and history record of "
          "the resident; their interactions stay. Repeating it answers with the first "
          "withdrawal."),
    Route("POST", "/residents/withdraw-consent", residents.withdraw_consent_by_contact,
          "Withdraw consent, naming a contact of the resident", ConsentWithdrawalRequest,
          ConsentWithdrawn, STAFF, tag="residents", errors=(404,),
          description="The same as DELETE /residents/{resident_id}/consent for the resident "
          "the phone number, e-mail address or telegram:<chat id> belongs to (404 "
          "unknown_resident when none; 422 invalid_contact when it is none of those)."),
    # --- cases (router.cases; roles narrowed further by unit membership) -----------------
    Route("POST", "/interactions/{ix_id}/case", cases.create_case,
          "Make a case of an interaction", CaseCreateRequest, CaseCreated, READERS,
          status=201, tag="cases", errors=(409,),
          description="The agent holding the interaction, or a supervisor. Blank fields are "
          "taken from the interaction (a web form's category, address, location, photo). The "
          "unit and due date come from cases.categories. The answer lists likely duplicates "
          "(same category, within cases.duplicate_radius_m, reported within "
          "cases.duplicate_window_hours). 409 exists when the interaction already has a case; "
          "422 unknown_category, invalid_location, invalid_contact, cases_disabled."),
    Route("POST", "/interactions/{ix_id}/case/link", cases.link_case,
          "Link an interaction to an open case (a duplicate report)", CaseLinkRequest,
          CaseLinked, READERS, tag="cases", errors=(409,),
          description="The interaction's resident is told of that case's outcome too. 409 "
          "invalid_state for a closed case, exists when the interaction has another case."),
    Route("GET", "/cases/duplicates", cases.find_duplicates,
          "Likely duplicates of a report", None, DuplicateList, READERS, tag="cases",
          errors=(422,),
          description="Query parameters: category (intervention skill), lat, lon (all "
          "required). Open cases of the category within cases.duplicate_radius_m reported "
          "within cases.duplicate_window_hours, nearest first."),
    Route("GET", "/cases/{number}", cases.get_case, "Read a case", None, CaseView, READERS,
          tag="cases",
          description="Members of its unit, the agent holding its interaction, supervisors."),
    Route("PUT", "/cases/{number}/status", cases.set_case_status, "Change a case's status",
          CaseStatusRequest, CaseStatusChanged, READERS, tag="cases", errors=(409,),
          description="Members of its unit and supervisors. open -> assigned | in_progress | "
          "rejected | duplicate; assigned -> open | in_progress | rejected | duplicate; "
          "in_progress -> completed | rejected; the same status again adds a note. completed "
          "and rejected send the residents a notice on their channel (cases.notify_on). 409 "
          "invalid_state for another transition, stale when the case moved meanwhile."),
    Route("PUT", "/cases/{number}/unit", cases.set_case_unit, "Hand a case to another unit",
          CaseUnitRequest, CaseView, READERS, tag="cases", errors=(409,),
          description="Members of its current unit and supervisors; it is open in the new "
          "unit, nobody assigned, same due date."),
    Route("GET", "/cases/{number}/photos/{index}", cases.case_photo, "A case's photo", None,
          None, READERS, tag="cases",
          media=("image/jpeg", "image/png", "image/webp", "image/gif"),
          description="The image itself (index: the case's media entry), with the type "
          "sniffed from its bytes (JPEG, PNG, WebP, GIF; nothing else is ever served), "
          "nosniff, Content-Disposition inline, Cache-Control private and a sandboxing CSP. "
          "Members of its unit, the agent holding its interaction, supervisors. 404 "
          "unknown_photo (no such index), photo_missing (an external link: open its URL "
          "instead; or the file is gone or not an image)."),
    Route("POST", "/cases/{number}/photos", cases.add_case_photo, "Add a photo to a case",
          None, PhotoAdded, READERS, status=201, tag="cases", errors=(409,), upload="photo",
          description="multipart/form-data: field photo (the image), optional field note "
          "(internal, in the history). Members of its unit and supervisors; any status (the "
          "crew's photo of finished work). 413 photo_too_large over "
          "channels.webform.max_photo_bytes, 422 not_a_photo (not a JPEG, PNG, WebP or GIF "
          "by its bytes) or too_many_photos, 415 for another body; a refusal keeps nothing. "
          "409 stale when the case moved to another unit meanwhile."),
    Route("GET", "/units/{unit}/cases", cases.unit_cases, "A unit's open cases", None,
          CaseList, READERS, tag="cases",
          description="Most urgent (earliest due) first. Members of the unit, supervisors."),
    Route("GET", "/public/cases/{number}", cases.public_case,
          "A case's public status (no personal data)", None, PublicCase, None, tag="cases",
          errors=(404,),
          description="For residents who quote the number: category, status, its history "
          "with the notes meant for them, the address and the place rounded to ~100 m; never "
          "who reported it, their contact, the description or internal notes. ?lang=pl|en|uk."),
    # --- admin: agents, queues, users -------------------------------------------------------
    Route("GET", "/admin/agents", admin.admin_list_agents, "Every agent as configured now",
          None, AdminAgentList, STAFF, tag="admin",
          description="The configuration file's agents with the admins' changes applied."),
    Route("GET", "/admin/agents/{agent_id}", admin.admin_get_agent, "One agent as configured now",
          None, AdminAgent, STAFF, tag="admin"),
    Route("PUT", "/admin/agents/{agent_id}", admin.admin_put_agent, "Add or replace an agent",
          AgentConfig, AdminAgent, ADMIN, tag="admin", errors=(409,),
          description=_LIVE + "Skills and capacity apply to routing at once, also for a "
          "signed-in agent."),
    Route("DELETE", "/admin/agents/{agent_id}", admin.admin_delete_agent, "Remove an agent",
          None, Removed, ADMIN, tag="admin", errors=(409,),
          description="409 busy while the agent is signed in or holds work (sign them out "
          "first); 409 in_use while a user works as the agent."),
    Route("POST", "/admin/agents/{agent_id}/reset", admin.admin_reset_agent,
          "Reset an agent to the configuration file's definition", None, ResetDone, ADMIN,
          tag="admin", errors=(409, 422),
          description="Drops the admins' change or removal of the agent: the file's definition "
          "applies again, validated like setting it (422 validation_error). An agent the file "
          "does not define is removed (result removed; 409 busy / in_use as for DELETE). 409 "
          "not_changed when the agent is as the file defines it."),
    Route("GET", "/admin/queues", admin.admin_list_queues, "Every queue as configured now",
          None, AdminQueueList, STAFF, tag="admin"),
    Route("GET", "/admin/queues/{name}", admin.admin_get_queue, "One queue as configured now",
          None, AdminQueue, STAFF, tag="admin"),
    Route("PUT", "/admin/queues/{name}", admin.admin_put_queue, "Add or replace a queue",
          QueueBody, AdminQueue, ADMIN, tag="admin", errors=(409,),
          description=_LIVE + "Service level, strategy, offer timeout, wrap-up and escalation "
          "apply at once; required skills and priority to interactions entering from then on. "
          "A channel change is refused while an enabled channel or an IVR flow sends to it."),
    Route("DELETE", "/admin/queues/{name}", admin.admin_delete_queue, "Remove a queue",
          None, Removed, ADMIN, tag="admin", errors=(409,),
          description="409 in_use while interactions wait in it, another queue overflows or "
          "escalates to it, an enabled channel hands its contacts to it, or an IVR flow of the "
          "enabled voice channel routes callers to it (details name the flow and the step)."),
    Route("POST", "/admin/queues/{name}/reset", admin.admin_reset_queue,
          "Reset a queue to the configuration file's definition", None, ResetDone, ADMIN,
          tag="admin", errors=(409, 422),
          description="Drops the admins' change or removal of the queue: the file's definition "
          "applies again, validated like setting it (422 validation_error). A queue the file "
          "does not define is removed (result removed; 409 in_use as for DELETE). 409 "
          "not_changed when the queue is as the file defines it."),
    Route("GET", "/admin/users", admin_users.admin_list_users, "Every user (never a password)",
          None, AdminUserList, ADMIN, tag="admin"),
    Route("POST", "/admin/users", admin_users.admin_create_user, "Create a user",
          UserCreateRequest, AdminUser, ADMIN, status=201, tag="admin", errors=(409,),
          description="409 user_exists when the name is taken."),
    Route("PUT", "/admin/users/{username}", admin_users.admin_update_user,
          "Change a user's role, agent or password", UserUpdateRequest, AdminUser, ADMIN,
          tag="admin", errors=(409,),
          description="A new password ends every session of the user. An admin cannot change "
          "their own role (409 self)."),
    Route("DELETE", "/admin/users/{username}", admin_users.admin_delete_user,
          "Remove a user and revoke their tokens", None, UserRemoved, ADMIN, tag="admin",
          errors=(409,), description="An admin cannot remove their own account (409 self)."),
    Route("POST", "/admin/users/{username}/unlock", admin_users.admin_unlock_user,
          "End a user's login lockout", None, Unlocked, ADMIN, tag="admin"),
]  # fmt: skip
