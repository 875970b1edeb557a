/// The OpenAPI 3.1 document of the front, served at `/openapi.json`. Written by hand beside the
/// routes it describes; schemathesis (scripts/api-tests, run by CI) checks that the responses
/// of a running `serve` conform to it.
enum OpenAPIDocument {
    static let json = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "upsert-worker serve",
            "version": "1.0.0",
            "description": "Create or find a contact, over a PostgreSQL job queue. Every accepted request is a job worked by upsert-worker run."
          },
          "paths": {
            "/api/public/customer/upsert/info": {
              "post": {
                "operationId": "upsertContact",
                "summary": "Create or find a contact",
                "parameters": [
                  {"name": "x-api-key", "in": "header", "required": true, "schema": {"type": "string"}},
                  {"name": "Prefer", "in": "header", "required": false, "schema": {"type": "string"},
                   "description": "respond-async answers 202 at once"},
                  {"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string"}}
                ],
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Payload"},
                    "examples": {
                      "whatsapp": {
                        "summary": "A person who wrote to a WhatsApp Business number",
                        "value": {"channel": "whatsapp", "channel_phone_number": "+56 2 2345 6789",
                                  "contact_phone_number": "+56 9 6123 4567", "contact_name": "María José Pérez",
                                  "contact_email": "mj.perez@example.cl", "meta_data": {"source": "landing-page"}}
                      }
                    }
                  }}
                },
                "responses": {
                  "200": {"description": "The job succeeded: its stored result",
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}}},
                  "202": {"description": "Accepted; not finished within the wait (or Prefer: respond-async)",
                          "headers": {"Location": {"schema": {"type": "string"}}},
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                  "400": {"$ref": "#/components/responses/Error"},
                  "401": {"$ref": "#/components/responses/Error"},
                  "413": {"$ref": "#/components/responses/Error"},
                  "415": {"$ref": "#/components/responses/Error"},
                  "500": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/api/public/jobs/{id}": {
              "get": {
                "operationId": "getJob",
                "summary": "A job of the key's organization",
                "parameters": [
                  {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "example": "1"},
                  {"name": "x-api-key", "in": "header", "required": true, "schema": {"type": "string"}}
                ],
                "responses": {
                  "200": {"description": "The job",
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                  "401": {"$ref": "#/components/responses/Error"},
                  "404": {"$ref": "#/components/responses/Error"},
                  "500": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/webhooks/whatsapp": {
              "get": {
                "operationId": "verifyWhatsApp",
                "summary": "WhatsApp Cloud API verification handshake",
                "parameters": [
                  {"name": "hub.mode", "in": "query", "required": false, "schema": {"type": "string"}},
                  {"name": "hub.verify_token", "in": "query", "required": false, "schema": {"type": "string"}},
                  {"name": "hub.challenge", "in": "query", "required": false, "schema": {"type": "string"}}
                ],
                "responses": {
                  "200": {"description": "The challenge", "content": {"text/plain": {"schema": {"type": "string"}}}},
                  "403": {"$ref": "#/components/responses/Error"}
                }
              },
              "post": {
                "operationId": "whatsAppNotification",
                "summary": "WhatsApp Cloud API notifications: one job per inbound message's sender",
                "parameters": [
                  {"name": "X-Hub-Signature-256", "in": "header", "required": false, "schema": {"type": "string"}}
                ],
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {"schema": {"type": "object"}}}
                },
                "responses": {
                  "200": {"description": "The jobs are committed",
                          "content": {"application/json": {"schema": {
                            "type": "object", "required": ["jobs"], "properties": {"jobs": {"type": "integer"}}}}}},
                  "400": {"$ref": "#/components/responses/Error"},
                  "401": {"$ref": "#/components/responses/Error"},
                  "413": {"$ref": "#/components/responses/Error"},
                  "500": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/healthz": {
              "get": {"operationId": "healthz", "summary": "The process runs",
                      "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
            },
            "/readyz": {
              "get": {"operationId": "readyz", "summary": "The database answers and the schema is migrated",
                      "responses": {"200": {"description": "ready", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                    "503": {"$ref": "#/components/responses/Error"}}}
            },
            "/metrics": {
              "get": {"operationId": "metrics", "summary": "Prometheus text format",
                      "responses": {"200": {"description": "The metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
            },
            "/openapi.json": {
              "get": {"operationId": "openapi", "summary": "This document",
                      "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}
            }
          },
          "components": {
            "responses": {
              "Error": {"description": "The error object",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
            "schemas": {
              "Payload": {
                "type": "object",
                "description": "The request body of the public API; every field is checked by the rules (docs/rules.md).",
                "properties": {
                  "channel": {"type": "string", "enum": ["whatsapp", "web-whatsapp", "webchat"]},
                  "channel_phone_number": {"type": ["string", "null"]},
                  "contact_phone_number": {"type": ["string", "null"]},
                  "channel_id": {"type": ["string", "null"]},
                  "external_user_id": {"type": ["string", "null"]},
                  "contact_name": {"type": ["string", "null"]},
                  "contact_email": {"type": ["string", "null"]},
                  "stageId": {"type": ["string", "null"]},
                  "agentId": {"type": ["string", "null"]},
                  "meta_data": {"type": ["object", "null"]},
                  "custom_field_values": {"type": ["array", "null"], "items": {
                    "type": "object", "required": ["key", "value"],
                    "properties": {"key": {"type": "string"}, "value": {"type": ["string", "number", "boolean"]}}}}
                },
                "required": ["channel"]
              },
              "Result": {
                "type": "object",
                "required": ["id", "name", "phone", "email", "platform", "client_id", "ai_customer_id", "created_at",
                             "default_stage_id", "created"],
                "properties": {
                  "id": {"type": "string"}, "name": {"type": ["string", "null"]}, "phone": {"type": ["string", "null"]},
                  "email": {"type": ["string", "null"]}, "platform": {"type": "string"}, "client_id": {"type": "string"},
                  "ai_customer_id": {"type": "string"}, "created_at": {"type": "string"},
                  "default_stage_id": {"type": ["string", "null"]}, "created": {"type": "boolean"}
                }
              },
              "Accepted": {
                "type": "object", "required": ["job_id", "state", "status_url"],
                "properties": {"job_id": {"type": "integer"}, "state": {"type": "string"}, "status_url": {"type": "string"}}
              },
              "Job": {
                "type": "object", "required": ["id", "state", "attempts", "result", "error"],
                "properties": {
                  "id": {"type": "integer"},
                  "state": {"type": "string", "enum": ["ready", "running", "succeeded", "failed", "cancelled"]},
                  "attempts": {"type": "integer"},
                  "result": {"oneOf": [{"$ref": "#/components/schemas/Result"}, {"type": "null"}]},
                  "error": {"oneOf": [{"$ref": "#/components/schemas/Error"}, {"type": "null"}]}
                }
              },
              "Error": {
                "type": "object", "required": ["status", "code", "message", "details"],
                "properties": {
                  "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                  "details": {"type": "object"}
                }
              }
            }
          }
        }
        """#
}
