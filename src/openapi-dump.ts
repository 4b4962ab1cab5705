import { generateOpenApiDocument, serializeOpenApi } from './openapi.js';

process.stdout.write(serializeOpenApi(await generateOpenApiDocument()));
