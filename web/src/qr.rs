//! `GET /api/v1/sessions/{id}/qr`: the QR a session shows, as JSON, SVG or
//! PNG (rendered with the qrcode crate; PNG encoded with the png crate).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppPath, AppQuery};
use crate::sessions::visible;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::session::SessionState;
use qrcode::render::svg;
use qrcode::{Color, QrCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How to render the QR.
#[derive(Deserialize, IntoParams)]
pub struct Format {
    /// `json` (the default), `svg` or `png`.
    format: Option<String>,
}

/// The QR shown now, as the text to encode.
#[derive(Serialize, ToSchema)]
pub struct QrBody {
    /// The text the QR encodes (WhatsApp's `ref,publicKey,...`).
    pub qr: String,
    pub expires_at: Timestamp,
}

pub async fn qr(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(f): AppQuery<Format>,
) -> Result<Response, ApiError> {
    let format = f.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "svg" | "png") {
        return Err(ApiError::bad_request(
            "invalid_format",
            "format is json, svg or png",
        ));
    }
    let d = visible(&state, &caller, &id).await?;
    let SessionState::Qr {
        code, expires_at, ..
    } = d.view.state
    else {
        return Err(ApiError::conflict(
            "not_showing_qr",
            "the session is not showing a QR",
        ));
    };
    match format {
        "svg" => Ok((
            [(header::CONTENT_TYPE, "image/svg+xml")],
            render_svg(&code)?,
        )
            .into_response()),
        "png" => Ok(([(header::CONTENT_TYPE, "image/png")], render_png(&code)?).into_response()),
        _ => Ok(Json(QrBody {
            qr: code,
            expires_at,
        })
        .into_response()),
    }
}

fn code(data: &str) -> Result<QrCode, ApiError> {
    QrCode::new(data.as_bytes()).map_err(ApiError::internal)
}

pub fn render_svg(data: &str) -> Result<String, ApiError> {
    Ok(code(data)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// Black modules on white, 8 pixels per module, a 4-module quiet zone.
pub fn render_png(data: &str) -> Result<Vec<u8>, ApiError> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let qr = code(data)?;
    let width = qr.width();
    let colors = qr.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % width + QUIET, i / width + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(side).map_err(ApiError::internal)?;
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(ApiError::internal)?;
        writer
            .write_image_data(&pixels)
            .map_err(ApiError::internal)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_svg_and_a_valid_png() {
        let svg = render_svg("ref,a,b,c,web").expect("svg");
        assert!(svg.contains("<svg"));
        let png = render_png("ref,a,b,c,web").expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().expect("decodes");
        assert!(reader.info().width >= 21 * 8);
    }
}
